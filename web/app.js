// The dashboard: log in, route between pages, poll the REST API every second and hand each reading to the page
// on screen. Everything shown comes from the public API with the user's own token and scopes.

import { Session } from "./api.js";
import { toast } from "./dom.js";
import { Rates } from "./rates.js";
import { adminPage } from "./admin.js";
import { overviewPage } from "./overview.js";
import { queuePage, queuesPage } from "./queues.js";
import { topicPage, topicsPage } from "./topics.js";

const POLL_MS = 1000;

const store = {
  session: new Session(),
  rates: new Rates(),
  queues: [],
  topics: [],
  cluster: null,
  nodeViews: new Map(),
};

let page = null;
let polling = false;
let wake = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  switch (parts[0]) {
    case "queues":
      return parts[1] ? queuePage(parts[1]) : queuesPage();
    case "topics":
      return parts[1] ? topicPage(parts[1]) : topicsPage();
    case "admin":
      return adminPage();
    default:
      return overviewPage();
  }
}

function show(section) {
  document.getElementById("login").hidden = section !== "login";
  document.getElementById("top").hidden = section === "login";
  document.getElementById("view").hidden = section === "login";
}

function navigate() {
  if (!store.session.active) {
    show("login");
    return;
  }
  show("app");
  document.getElementById("whoami").textContent = store.session.username;
  document.getElementById("nav-admin").hidden = !store.session.isAdmin;
  page = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === page.nav);
  }
  const root = document.getElementById("view");
  root.replaceChildren();
  page.mount(root, store, { refresh: pollNow });
  pollNow();
}

function setConnection(ok, text) {
  const pill = document.getElementById("connection");
  pill.textContent = text;
  pill.className = `pill ${ok ? "ok" : "bad"}`;
}

async function pollOnce() {
  const { session, rates } = store;
  const [queues, topics] = await Promise.all([session.get("/v1/queues"), session.get("/v1/topics")]);
  const now = Date.now();
  store.queues = queues.queues;
  store.topics = topics.topics;
  const keys = new Set();
  for (const queue of store.queues) {
    rates.record(`queue:${queue.name}`, queue.totals, now);
    keys.add(`queue:${queue.name}`);
  }
  for (const topic of store.topics) {
    rates.record(`topic:${topic.name}`, topic.totals, now);
    keys.add(`topic:${topic.name}`);
    for (const sub of topic.subscriptions) {
      rates.record(`sub:${topic.name}/${sub.name}`, sub.totals, now);
      keys.add(`sub:${topic.name}/${sub.name}`);
    }
  }
  rates.forget(keys);
  if (page && page.update) await page.update(store);
}

async function pollLoop() {
  if (polling) return;
  polling = true;
  while (store.session.active) {
    try {
      await pollOnce();
      setConnection(true, "live");
    } catch (error) {
      if (error.status === 401) {
        store.session.clear();
        document.getElementById("login-error").textContent = "Your session ended: log in again.";
        break;
      }
      setConnection(false, error.status === 0 ? "node unreachable" : `error ${error.status}`);
    }
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, POLL_MS);
    });
  }
  polling = false;
  navigate();
}

function pollNow() {
  if (wake) wake();
  pollLoop();
}

function start() {
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const error = document.getElementById("login-error");
    error.textContent = "";
    try {
      await store.session.login(form.username.value, form.password.value);
      form.password.value = "";
      navigate();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  document.getElementById("logout").addEventListener("click", () => {
    store.session.logout();
    store.queues = [];
    store.topics = [];
    store.cluster = null;
    store.nodeViews.clear();
    toast("Logged out.");
    navigate();
  });
  window.addEventListener("hashchange", navigate);
  navigate();
}

start();
