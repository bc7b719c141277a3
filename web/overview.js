// Overview: the nodes (up or down, what each leads), replication lag per destination, and cluster-wide rates.
//
// Each node's /v1/cluster is exact for the groups it leads, so the page asks every node for its own view
// (`?node=ID`, which the node serving the page forwards) and merges them. A node that does not answer is down.

import { fmtAge, fmtNumber, fmtRate, h, replace, table } from "./dom.js";

function rfcAge(text) {
  return text ? Math.max(0, (Date.now() - Date.parse(text)) / 1000) : null;
}

async function clusterViews(store) {
  const { session } = store;
  const local = await session.get("/v1/cluster");
  const others = local.nodes.filter((node) => node.id !== local.node_id);
  const answers = await Promise.allSettled(
    others.map((node) => session.get(`/v1/cluster?node=${encodeURIComponent(node.id)}`, { timeoutMs: 3000 })),
  );
  const views = new Map([[local.node_id, local]]);
  others.forEach((node, i) => views.set(node.id, answers[i].status === "fulfilled" ? answers[i].value : null));
  return { local, views };
}

function merge(local, views) {
  // Per destination: the leader's own view (leader, commit index, lag), else what the serving node knows.
  const merged = new Map();
  for (const entry of local.destinations) merged.set(`${entry.kind}:${entry.name}`, { ...entry });
  for (const [nodeId, view] of views) {
    if (!view) continue;
    for (const entry of view.destinations) {
      const key = `${entry.kind}:${entry.name}`;
      if (!merged.has(key)) merged.set(key, { ...entry });
      if (entry.leader === nodeId) merged.set(key, { ...entry });
    }
  }
  return [...merged.values()].sort((a, b) => a.name.localeCompare(b.name) || a.kind.localeCompare(b.kind));
}

function nodeState(node, views) {
  // Down if the serving node cannot reach it or it does not answer its own view.
  if (node.state !== "up") return "down";
  if (views.has(node.id) && views.get(node.id) === null) return "down";
  return "up";
}

export function overviewPage() {
  let nodesBox;
  let ratesBox;
  let destinationsBox;
  let headline;

  return {
    nav: "overview",
    mount(root) {
      headline = h("p", { className: "muted", testid: "cluster-headline" }, "loading…");
      nodesBox = h("div", { testid: "nodes" });
      ratesBox = h("div", { className: "stats", testid: "cluster-rates" });
      destinationsBox = h("div", { testid: "replication" });
      root.append(
        h("h1", {}, "Cluster"),
        headline,
        h("section", { className: "card" }, h("h2", {}, "Message rates"), ratesBox),
        h("section", { className: "card" }, h("h2", {}, "Nodes"), nodesBox),
        h("section", { className: "card" }, h("h2", {}, "Replication"), destinationsBox),
      );
    },
    async update(store) {
      const { local, views } = await clusterViews(store);
      const destinations = merge(local, views);
      replace(
        headline,
        `${local.nodes.length} node${local.nodes.length === 1 ? "" : "s"}, transport ${local.transport}, `,
        `metadata leader ${local.metadata_leader || "none (election under way)"}; this page is served by ${local.node_id}.`,
      );

      const keys = [
        ...store.queues.map((q) => `queue:${q.name}`),
        ...store.topics.map((t) => `topic:${t.name}`),
      ];
      replace(
        ratesBox,
        ["published", "delivered", "acked", "dead_lettered"].map((what) =>
          h(
            "div",
            { className: "stat", testid: `rate-${what}` },
            h("span", { className: "value" }, fmtRate(store.rates.sum(keys, what))),
            h("span", { className: "label" }, what.replace("_", " ")),
          ),
        ),
      );

      const rows = local.nodes.map((node) => {
        const state = nodeState(node, views);
        const leads = destinations.filter((d) => d.leader === node.id).map((d) => d.name);
        if (local.metadata_leader === node.id) leads.unshift("(metadata)");
        return h(
          "tr",
          { testid: `node-${node.id}`, className: `node ${state}`, "data-state": state },
          h("td", {}, h("span", { className: `dot ${state}` }), node.id),
          h("td", { className: "state" }, state),
          h("td", {}, node.rest_url),
          h("td", {}, node.last_seen ? `${fmtAge(rfcAge(node.last_seen))} ago` : "never"),
          h("td", { className: "leads" }, leads.length ? leads.join(", ") : "–"),
        );
      });
      replace(nodesBox, table(["node", "state", "REST", "last seen", "leads"], rows));

      const lagRows = destinations.map((d) => {
        const lags = d.replica_lag ? Object.values(d.replica_lag) : [];
        const worst = lags.length ? Math.max(...lags) : null;
        return h(
          "tr",
          { testid: `replication-${d.kind}-${d.name}` },
          h("td", {}, d.kind),
          h("td", {}, h("a", { href: `#/${d.kind}s/${encodeURIComponent(d.name)}` }, d.name)),
          h("td", {}, d.leader || "none"),
          h("td", {}, d.replicas.join(", ")),
          h("td", {}, fmtNumber(d.commit_index)),
          h("td", { className: worst ? "warn" : "" }, worst === null ? "–" : `${fmtNumber(worst)} entries`),
        );
      });
      replace(
        destinationsBox,
        lagRows.length
          ? table(["kind", "name", "leader", "replicas", "commit index", "replica lag (max)"], lagRows)
          : h("p", { className: "muted" }, "No destinations you may see yet."),
      );
    },
  };
}
