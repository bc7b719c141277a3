// Topics: the list, and one topic's page with its attributes, replicas, rates, subscriptions with their lag,
// the newest retained messages, publish and delete.

import { drawChart, legend } from "./chart.js";
import { bodyText, confirmAction, fmtAge, fmtBytes, fmtNumber, fmtRate, h, replace, table, toast } from "./dom.js";
import { messageForm } from "./forms.js";

const enc = encodeURIComponent;

export function topicsPage() {
  let listBox;
  return {
    nav: "topics",
    mount(root, store, { refresh }) {
      listBox = h("div", { testid: "topic-list" }, h("p", { className: "muted" }, "loading…"));
      const form = h(
        "form",
        { className: "inline", testid: "create-topic" },
        h("input", { name: "name", placeholder: "name", required: true, pattern: "[A-Za-z0-9._\\-]{1,200}" }),
        h("input", { name: "retention", type: "number", min: "0.001", step: "any", placeholder: "retention s" }),
        h("button", { type: "submit" }, "Create topic"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const attrs = form.retention.value ? { retention_s: Number(form.retention.value) } : {};
        try {
          await store.session.put(`/v1/topics/${enc(form.name.value)}`, attrs);
          toast(`Topic ${form.name.value} is ready.`);
          form.reset();
          refresh();
        } catch (error) {
          toast(error.message, "error");
        }
      });
      root.append(h("h1", {}, "Topics"), h("section", { className: "card" }, listBox), h("section", { className: "card" }, h("h2", {}, "New topic"), form));
    },
    update(store) {
      const rows = store.topics.map((t) => {
        const worst = Math.max(0, ...t.subscriptions.map((s) => s.lag));
        return h(
          "tr",
          { testid: `topic-row-${t.name}` },
          h("td", {}, h("a", { href: `#/topics/${enc(t.name)}` }, t.name)),
          h("td", { "data-field": "messages" }, fmtNumber(t.messages)),
          h("td", {}, fmtBytes(t.bytes)),
          h("td", {}, fmtNumber(t.subscriptions.length)),
          h("td", { "data-field": "lag" }, fmtNumber(worst)),
          h("td", {}, fmtRate(store.rates.rate(`topic:${t.name}`, "published"))),
          h("td", {}, fmtRate(store.rates.rate(`topic:${t.name}`, "delivered"))),
          h("td", {}, t.leader || "none"),
        );
      });
      replace(
        listBox,
        rows.length
          ? table(["name", "retained", "bytes", "subscriptions", "max lag", "publish", "deliver", "leader"], rows)
          : h("p", { className: "muted" }, "No topics you may see yet."),
      );
    },
  };
}

export function topicPage(name) {
  const key = `topic:${name}`;
  let statsBox;
  let subsBox;
  let attrsBox;
  let recentBox;
  let chart;
  let gone = false;

  async function recent(store, info) {
    const from = Math.max(info.first_offset, info.next_offset - 20);
    const answer = await store.session.get(`/v1/topics/${enc(name)}/messages?from_offset=${from}&limit=20`);
    const rows = answer.messages.map((m) =>
      h(
        "tr",
        { testid: "replayed-message" },
        h("td", {}, fmtNumber(m.offset)),
        h("td", { className: "mono" }, m.id),
        h("td", {}, m.published_at),
        h("td", { className: "mono" }, JSON.stringify(m.headers)),
        h("td", { className: "mono body" }, bodyText(m)),
      ),
    );
    replace(recentBox, rows.length ? table(["offset", "id", "published", "headers", "body"], rows) : h("p", { className: "muted" }, "Nothing retained."));
  }

  return {
    nav: "topics",
    mount(root, store, { refresh }) {
      statsBox = h("div", { className: "stats", testid: "topic-stats" });
      subsBox = h("div", { testid: "subscriptions" });
      attrsBox = h("div", { testid: "topic-attributes" });
      recentBox = h("div", { testid: "replay-result" });
      chart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      chart.dataset.testid = "rate-chart";

      const publish = messageForm("publish-form", async (message) => {
        const answer = await store.session.post(`/v1/topics/${enc(name)}/messages`, message);
        toast(`Published ${answer.messages[0].id}.`);
        refresh();
      });

      const subscribe = h(
        "form",
        { className: "inline", testid: "create-subscription" },
        h("input", { name: "name", placeholder: "subscription", required: true, pattern: "[A-Za-z0-9._\\-]{1,200}" }),
        h("select", { name: "start" }, h("option", { value: "latest" }, "from the next message"), h("option", { value: "earliest" }, "from the oldest retained")),
        h("button", { type: "submit" }, "Subscribe"),
      );
      subscribe.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await store.session.put(`/v1/topics/${enc(name)}/subscriptions/${enc(subscribe.name.value)}`, { start: subscribe.start.value });
          toast(`Subscription ${subscribe.name.value} is ready.`);
          subscribe.reset();
          refresh();
        } catch (error) {
          toast(error.message, "error");
        }
      });

      const show = h("button", { type: "button", testid: "replay" }, "Show the newest 20");
      show.addEventListener("click", async () => {
        try {
          await recent(store, await store.session.get(`/v1/topics/${enc(name)}`));
        } catch (error) {
          toast(error.message, "error");
        }
      });

      const remove = h("button", { type: "button", className: "danger", testid: "delete" }, "Delete topic");
      remove.addEventListener("click", async () => {
        if (!(await confirmAction(`Delete topic ${name}, its retained messages and all its subscriptions?`))) return;
        try {
          await store.session.del(`/v1/topics/${enc(name)}`);
          gone = true;
          toast(`Deleted topic ${name}.`);
          location.hash = "#/topics";
        } catch (error) {
          toast(error.message, "error");
        }
      });

      root.append(
        h("p", {}, h("a", { href: "#/topics" }, "← Topics")),
        h("h1", {}, "Topic ", h("span", { className: "mono", testid: "topic-name" }, name)),
        h("section", { className: "card" }, statsBox),
        h("section", { className: "card" }, h("h2", {}, "Rates"), chart, legend(["published", "delivered", "acked", "dead_lettered"])),
        h("section", { className: "card" }, h("h2", {}, "Subscriptions"), subsBox, subscribe),
        h("section", { className: "card" }, h("h2", {}, "Attributes and replicas"), attrsBox),
        h("section", { className: "card" }, h("h2", {}, "Retained messages"), show, recentBox),
        h("section", { className: "card" }, h("h2", {}, "Publish a test message"), publish),
        h("section", { className: "card danger-zone" }, h("h2", {}, "Danger zone"), remove),
      );
    },
    async update(store) {
      if (gone) return;
      let t;
      try {
        t = await store.session.get(`/v1/topics/${enc(name)}`);
      } catch (error) {
        if (error.status === 404) {
          replace(statsBox, h("p", { className: "error", testid: "not-found" }, `Topic ${name} does not exist (any more).`));
          return;
        }
        throw error;
      }
      const now = Date.now();
      store.rates.record(key, t.totals, now);
      const stat = (label, value, field) =>
        h("div", { className: "stat", testid: `stat-${field}` }, h("span", { className: "value" }, value), h("span", { className: "label" }, label));
      replace(
        statsBox,
        stat("retained", fmtNumber(t.messages), "messages"),
        stat("bytes", fmtBytes(t.bytes), "bytes"),
        stat("offsets", `${fmtNumber(t.first_offset)} – ${fmtNumber(t.next_offset)}`, "offsets"),
        stat("published/s", fmtRate(store.rates.rate(key, "published")), "publish-rate"),
        stat("delivered/s", fmtRate(store.rates.rate(key, "delivered")), "deliver-rate"),
        stat("published", fmtNumber(t.totals.published), "published"),
      );
      drawChart(
        chart,
        ["published", "delivered", "acked", "dead_lettered"].map((what) => ({ name: what, points: store.rates.history(key, what) })),
        { now },
      );
      const rows = t.subscriptions.map((s) => {
        const subKey = `sub:${name}/${s.name}`;
        store.rates.record(subKey, s.totals, now);
        return h(
          "tr",
          { testid: `subscription-row-${s.name}` },
          h("td", {}, s.name),
          h("td", { "data-field": "lag" }, fmtNumber(s.lag)),
          h("td", { "data-field": "lag_s" }, fmtAge(s.lag_s)),
          h("td", {}, fmtNumber(s.ready)),
          h("td", {}, fmtNumber(s.in_flight)),
          h("td", {}, fmtRate(store.rates.rate(subKey, "delivered"))),
          h("td", {}, fmtRate(store.rates.rate(subKey, "acked"))),
          h("td", {}, fmtNumber(s.totals.dead_lettered)),
          h("td", {}, fmtNumber(s.next_offset)),
        );
      });
      replace(
        subsBox,
        rows.length
          ? table(["subscription", "lag (messages)", "lag (oldest)", "ready", "in flight", "deliver", "ack", "dead-lettered", "next offset"], rows)
          : h("p", { className: "muted" }, "No subscriptions."),
      );
      const attributes = Object.entries(t.attributes).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v === null ? "–" : String(v))));
      replace(
        attrsBox,
        table(["attribute", "value"], [
          ...attributes,
          h("tr", {}, h("th", {}, "owner"), h("td", {}, t.owner)),
          h("tr", {}, h("th", {}, "leader"), h("td", { testid: "leader" }, t.leader || "none")),
          h("tr", {}, h("th", {}, "replicas"), h("td", { testid: "replicas" }, t.replicas.join(", "))),
          h("tr", {}, h("th", {}, "created"), h("td", {}, t.created_at)),
        ]),
      );
    },
  };
}
