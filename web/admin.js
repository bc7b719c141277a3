// Admin: users and OAuth clients (list, create, delete, scopes). Admins only; the API refuses anyone else.

import { confirmAction, h, replace, table, toast } from "./dom.js";

const enc = encodeURIComponent;

function scopesOf(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

export function adminPage() {
  let usersBox;
  let clientsBox;
  let secretBox;
  let loaded = false;

  async function load(store) {
    const [users, clients] = await Promise.allSettled([store.session.get("/v1/auth/users"), store.session.get("/v1/auth/clients")]);
    renderUsers(store, users);
    renderClients(store, clients);
  }

  function failure(result, what) {
    const status = result.reason && result.reason.status;
    const text = status === 404 || status === 405 ? `This server cannot list ${what}.` : result.reason.message;
    return h("p", { className: "error" }, text);
  }

  function renderUsers(store, result) {
    if (result.status === "rejected") {
      replace(usersBox, failure(result, "users"));
      return;
    }
    const rows = result.value.users.map((user) =>
      h(
        "tr",
        { testid: `user-row-${user.username}` },
        h("td", {}, user.username),
        h("td", { className: "mono" }, user.scopes.join(" ")),
        h("td", {}, user.created_at || ""),
        h("td", {}, deleteButton(store, `user ${user.username}`, `/v1/auth/users/${enc(user.username)}`)),
      ),
    );
    replace(usersBox, table(["user", "scopes", "created", ""], rows));
  }

  function renderClients(store, result) {
    if (result.status === "rejected") {
      replace(clientsBox, failure(result, "clients"));
      return;
    }
    const rows = result.value.clients.map((client) =>
      h(
        "tr",
        { testid: `client-row-${client.client_id}` },
        h("td", { className: "mono" }, client.client_id),
        h("td", { className: "mono" }, client.scopes.join(" ")),
        h("td", {}, client.owner || ""),
        h("td", {}, deleteButton(store, `client ${client.client_id}`, `/v1/auth/clients/${enc(client.client_id)}`)),
      ),
    );
    replace(clientsBox, rows.length ? table(["client", "scopes", "created by", ""], rows) : h("p", { className: "muted" }, "No OAuth clients."));
  }

  function deleteButton(store, what, path) {
    const button = h("button", { type: "button", className: "danger small" }, "Delete");
    button.addEventListener("click", async () => {
      if (!(await confirmAction(`Delete ${what}? Its tokens stop working.`))) return;
      try {
        await store.session.del(path);
        toast(`Deleted ${what}.`);
        await load(store);
      } catch (error) {
        toast(error.message, "error");
      }
    });
    return button;
  }

  return {
    nav: "admin",
    mount(root, store) {
      usersBox = h("div", { testid: "users" });
      clientsBox = h("div", { testid: "clients" });
      secretBox = h("div", { testid: "client-secret" });

      const userForm = h(
        "form",
        { className: "inline", testid: "create-user" },
        h("input", { name: "username", placeholder: "username", required: true }),
        h("input", { name: "password", type: "password", placeholder: "password (8+ characters)", minlength: "8", required: true }),
        h("input", { name: "scopes", placeholder: "extra scopes, e.g. mom.read:orders*" }),
        h("button", { type: "submit" }, "Create user"),
      );
      userForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        const username = userForm.username.value;
        try {
          await store.session.post("/v1/auth/users", { username, password: userForm.password.value });
          const scopes = scopesOf(userForm.scopes.value);
          if (scopes.length) await store.session.post(`/v1/auth/users/${enc(username)}/grant`, { scopes });
          toast(`Created user ${username}.`);
          userForm.reset();
          await load(store);
        } catch (error) {
          toast(error.message, "error");
        }
      });

      const clientForm = h(
        "form",
        { className: "inline", testid: "create-client" },
        h("input", { name: "client_id", placeholder: "client id (optional)" }),
        h("input", { name: "scopes", placeholder: "scopes, e.g. mom.write:orders", required: true }),
        h("button", { type: "submit" }, "Create client"),
      );
      clientForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        const body = { scopes: scopesOf(clientForm.scopes.value) };
        if (clientForm.client_id.value) body.client_id = clientForm.client_id.value;
        try {
          const created = await store.session.post("/v1/auth/clients", body);
          replace(
            secretBox,
            h("p", { className: "notice" }, "Client ", h("b", {}, created.client_id), " created. Its secret is shown only now: ", h("code", { testid: "secret" }, created.client_secret)),
          );
          clientForm.reset();
          await load(store);
        } catch (error) {
          toast(error.message, "error");
        }
      });

      root.append(
        h("h1", {}, "Admin"),
        h("section", { className: "card" }, h("h2", {}, "Users"), usersBox, userForm),
        h("section", { className: "card" }, h("h2", {}, "OAuth clients"), clientsBox, secretBox, clientForm),
      );
    },
    async update(store) {
      if (loaded) return; // accounts change only from this page: load once, then after each change
      loaded = true;
      await load(store);
    },
  };
}
