// Queues: the list with depths and rates, and one queue's page with its attributes, replicas, a rate chart,
// peek, publish, purge, redrive and delete.

import { drawChart, legend } from "./chart.js";
import {
  bodyText,
  confirmAction,
  fmtAge,
  fmtBytes,
  fmtNumber,
  fmtRate,
  h,
  replace,
  table,
  toast,
} from "./dom.js";
import { messageForm, parseOptionalInt } from "./forms.js";

const enc = encodeURIComponent;

export function queuesPage() {
  let listBox;
  return {
    nav: "queues",
    mount(root, store, { refresh }) {
      listBox = h("div", { testid: "queue-list" }, h("p", { className: "muted" }, "loading…"));
      const form = h(
        "form",
        { className: "inline", testid: "create-queue" },
        h("input", { name: "name", placeholder: "name", required: true, pattern: "[A-Za-z0-9._\\-]{1,200}" }),
        h("input", { name: "visibility", type: "number", min: "0.001", step: "any", placeholder: "visibility timeout s" }),
        h("input", { name: "max_deliveries", type: "number", min: "1", placeholder: "max deliveries" }),
        h("input", { name: "dead_letter_queue", placeholder: "dead-letter queue" }),
        h("button", { type: "submit" }, "Create queue"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const attrs = {};
        if (form.visibility.value) attrs.visibility_timeout_s = Number(form.visibility.value);
        if (form.max_deliveries.value) attrs.max_deliveries = Number(form.max_deliveries.value);
        if (form.dead_letter_queue.value) attrs.dead_letter_queue = form.dead_letter_queue.value;
        try {
          await store.session.put(`/v1/queues/${enc(form.name.value)}`, attrs);
          toast(`Queue ${form.name.value} is ready.`);
          form.reset();
          refresh();
        } catch (error) {
          toast(error.message, "error");
        }
      });
      root.append(h("h1", {}, "Queues"), h("section", { className: "card" }, listBox), h("section", { className: "card" }, h("h2", {}, "New queue"), form));
    },
    update(store) {
      const rows = store.queues.map((q) => {
        const key = `queue:${q.name}`;
        return h(
          "tr",
          { testid: `queue-row-${q.name}` },
          h("td", {}, h("a", { href: `#/queues/${enc(q.name)}` }, q.name)),
          h("td", { "data-field": "ready" }, fmtNumber(q.ready)),
          h("td", { "data-field": "delayed" }, fmtNumber(q.delayed)),
          h("td", { "data-field": "in_flight" }, fmtNumber(q.in_flight)),
          h("td", {}, fmtAge(q.oldest_age_s)),
          h("td", {}, fmtRate(store.rates.rate(key, "published"))),
          h("td", {}, fmtRate(store.rates.rate(key, "delivered"))),
          h("td", {}, fmtRate(store.rates.rate(key, "acked"))),
          h("td", { "data-field": "dead_lettered" }, fmtNumber(q.totals.dead_lettered)),
          h("td", {}, q.leader || "none"),
        );
      });
      replace(
        listBox,
        rows.length
          ? table(["name", "ready", "delayed", "in flight", "oldest", "publish", "deliver", "ack", "dead-lettered", "leader"], rows)
          : h("p", { className: "muted" }, "No queues you may see yet."),
      );
    },
  };
}

export function queuePage(name) {
  const key = `queue:${name}`;
  let statsBox;
  let attrsBox;
  let chart;
  let peekBox;
  let gone = false;

  async function peek(store, limit) {
    const answer = await store.session.get(`/v1/queues/${enc(name)}/messages?limit=${limit}`);
    const rows = answer.messages.map((m) =>
      h(
        "tr",
        { testid: "peeked-message" },
        h("td", {}, fmtNumber(m.offset)),
        h("td", { className: "mono" }, m.id),
        h("td", {}, m.state || ""),
        h("td", {}, fmtNumber(m.deliveries)),
        h("td", {}, m.published_at),
        h("td", { className: "mono" }, JSON.stringify(m.headers)),
        h("td", { className: "mono body" }, bodyText(m)),
      ),
    );
    replace(
      peekBox,
      rows.length
        ? table(["offset", "id", "state", "deliveries", "published", "headers", "body"], rows)
        : h("p", { className: "muted", testid: "peek-empty" }, "The queue holds no messages."),
    );
  }

  return {
    nav: "queues",
    mount(root, store, { refresh }) {
      statsBox = h("div", { className: "stats", testid: "queue-stats" });
      attrsBox = h("div", { testid: "queue-attributes" });
      chart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      chart.dataset.testid = "rate-chart";
      peekBox = h("div", { testid: "peek-result" });

      const peekLimit = h("input", { name: "limit", type: "number", min: "1", max: "1000", value: "20" });
      const peekButton = h("button", { type: "button", testid: "peek" }, "Peek");
      peekButton.addEventListener("click", () => peek(store, Number(peekLimit.value) || 20).catch((e) => toast(e.message, "error")));

      const publish = messageForm("publish-form", async (message) => {
        const answer = await store.session.post(`/v1/queues/${enc(name)}/messages`, message);
        toast(`Published ${answer.messages[0].id}.`);
        refresh();
      });

      const purge = h("button", { type: "button", className: "danger", testid: "purge" }, "Purge");
      purge.addEventListener("click", async () => {
        if (!(await confirmAction(`Remove every message of queue ${name}, in flight ones too?`))) return;
        try {
          const answer = await store.session.post(`/v1/queues/${enc(name)}/purge`);
          toast(`Purged ${answer.purged} message${answer.purged === 1 ? "" : "s"}.`);
          replace(peekBox);
          refresh();
        } catch (error) {
          toast(error.message, "error");
        }
      });

      const redriveCount = h("input", { name: "max_messages", type: "number", min: "1", placeholder: "all" });
      const redrive = h("button", { type: "button", testid: "redrive" }, "Redrive");
      redrive.addEventListener("click", async () => {
        const max = parseOptionalInt(redriveCount.value);
        const what = max === null ? "every dead letter" : `${max} dead letter${max === 1 ? "" : "s"}`;
        if (!(await confirmAction(`Move ${what} of ${name} back to the queue each one came from?`))) return;
        try {
          const answer = await store.session.post(`/v1/queues/${enc(name)}/redrive`, { max_messages: max });
          const where = Object.entries(answer.by_queue).map(([q, n]) => `${n} to ${q}`).join(", ");
          toast(`Moved ${answer.moved}${where ? ` (${where})` : ""}; ${answer.skipped} stayed.`);
          refresh();
        } catch (error) {
          toast(error.message, "error");
        }
      });

      const remove = h("button", { type: "button", className: "danger", testid: "delete" }, "Delete queue");
      remove.addEventListener("click", async () => {
        if (!(await confirmAction(`Delete queue ${name} and all its messages? This cannot be undone.`))) return;
        try {
          await store.session.del(`/v1/queues/${enc(name)}`);
          gone = true;
          toast(`Deleted queue ${name}.`);
          location.hash = "#/queues";
        } catch (error) {
          toast(error.message, "error");
        }
      });

      root.append(
        h("p", {}, h("a", { href: "#/queues" }, "← Queues")),
        h("h1", {}, "Queue ", h("span", { className: "mono", testid: "queue-name" }, name)),
        h("section", { className: "card" }, statsBox),
        h("section", { className: "card" }, h("h2", {}, "Rates"), chart, legend(["published", "delivered", "acked", "dead_lettered"])),
        h("section", { className: "card" }, h("h2", {}, "Attributes and replicas"), attrsBox),
        h(
          "section",
          { className: "card" },
          h("h2", {}, "Peek"),
          h("p", { className: "muted" }, "Read messages without receiving them: nothing is leased or changed."),
          h("div", { className: "inline" }, peekLimit, peekButton),
          peekBox,
        ),
        h("section", { className: "card" }, h("h2", {}, "Publish a test message"), publish),
        h(
          "section",
          { className: "card" },
          h("h2", {}, "Dead letters"),
          h("p", { className: "muted" }, "If this is a dead-letter queue: move its messages back to the queue named in their x-death header."),
          h("div", { className: "inline" }, redriveCount, redrive),
        ),
        h("section", { className: "card danger-zone" }, h("h2", {}, "Danger zone"), h("div", { className: "inline" }, purge, remove)),
      );
    },
    async update(store) {
      if (gone) return;
      let q;
      try {
        q = await store.session.get(`/v1/queues/${enc(name)}`);
      } catch (error) {
        if (error.status === 404) {
          replace(statsBox, h("p", { className: "error", testid: "not-found" }, `Queue ${name} does not exist (any more).`));
          return;
        }
        throw error;
      }
      const now = Date.now();
      store.rates.record(key, q.totals, now);
      const stat = (label, value, field) =>
        h("div", { className: "stat", testid: `stat-${field}` }, h("span", { className: "value" }, value), h("span", { className: "label" }, label));
      replace(
        statsBox,
        stat("ready", fmtNumber(q.ready), "ready"),
        stat("delayed", fmtNumber(q.delayed), "delayed"),
        stat("in flight", fmtNumber(q.in_flight), "in_flight"),
        stat("bytes", fmtBytes(q.bytes), "bytes"),
        stat("oldest message", fmtAge(q.oldest_age_s), "oldest"),
        stat("published/s", fmtRate(store.rates.rate(key, "published")), "publish-rate"),
        stat("delivered/s", fmtRate(store.rates.rate(key, "delivered")), "deliver-rate"),
        stat("acked/s", fmtRate(store.rates.rate(key, "acked")), "ack-rate"),
        stat("published", fmtNumber(q.totals.published), "published"),
        stat("acked", fmtNumber(q.totals.acked), "acked"),
        stat("dead-lettered", fmtNumber(q.totals.dead_lettered), "dead_lettered"),
      );
      drawChart(
        chart,
        ["published", "delivered", "acked", "dead_lettered"].map((what) => ({ name: what, points: store.rates.history(key, what) })),
        { now },
      );
      const attributes = Object.entries(q.attributes).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v === null ? "–" : String(v))));
      replace(
        attrsBox,
        table(["attribute", "value"], [
          ...attributes,
          h("tr", {}, h("th", {}, "owner"), h("td", {}, q.owner)),
          h("tr", {}, h("th", {}, "leader"), h("td", { testid: "leader" }, q.leader || "none")),
          h("tr", {}, h("th", {}, "replicas"), h("td", { testid: "replicas" }, q.replicas.join(", "))),
          h("tr", {}, h("th", {}, "created"), h("td", {}, q.created_at)),
        ]),
      );
    },
  };
}
