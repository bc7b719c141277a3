// The REST API as the dashboard uses it: the session's token (memory and sessionStorage, never a URL),
// JSON in and out, and problem+json errors turned into exceptions with the server's own words.

const KEY = "mom.session";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
  }
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export class Session {
  constructor() {
    const saved = sessionStorage.getItem(KEY);
    this.data = saved ? JSON.parse(saved) : null;
    if (this.data && this.data.expires_at < Date.now()) this.clear();
  }

  get active() {
    return this.data !== null;
  }

  get username() {
    return this.data ? this.data.username : "";
  }

  get scopes() {
    return this.data ? this.data.scope.split(" ") : [];
  }

  get isAdmin() {
    return this.scopes.includes("mom.admin");
  }

  async login(username, password) {
    const form = new URLSearchParams({ grant_type: "password", username, password });
    const answer = await fetch("/v1/auth/token", { method: "POST", body: form });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      throw new ApiError(answer.status, body.error, body.error_description || body.detail || "login failed");
    }
    const claims = decodeClaims(body.access_token);
    this.data = {
      token: body.access_token,
      username: claims.sub ? String(claims.sub).replace(/^user:/, "") : username,
      scope: body.scope || claims.scope || "",
      expires_at: Date.now() + body.expires_in * 1000,
    };
    sessionStorage.setItem(KEY, JSON.stringify(this.data));
  }

  clear() {
    this.data = null;
    sessionStorage.removeItem(KEY);
  }

  // Log out: forget the token here and ask the broker to revoke it everywhere (RFC 7009), so a copy of it
  // (a saved tab, a proxy log) stops working too. Best effort: forgetting it does not wait for the answer.
  logout() {
    const token = this.data && this.data.token;
    this.clear();
    if (token) {
      fetch("/v1/auth/revoke", { method: "POST", body: new URLSearchParams({ token }) }).catch(() => {});
    }
  }

  // A request that takes longer than `timeoutMs` counts as unanswered, so one silent node cannot stall the
  // page's polling.
  async request(method, path, body, { timeoutMs = method === "GET" ? 15000 : 120000 } = {}) {
    if (!this.data) throw new ApiError(401, "Unauthorized", "not logged in");
    const headers = { Authorization: `Bearer ${this.data.token}` };
    const init = { method, headers, signal: AbortSignal.timeout(timeoutMs) };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, "Unreachable", "the node does not answer");
    }
    if (answer.status === 204) return null;
    const text = await answer.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { detail: text };
    }
    if (!answer.ok) {
      throw new ApiError(answer.status, parsed && parsed.title, parsed && (parsed.detail || parsed.title));
    }
    return parsed;
  }

  get(path, options) {
    return this.request("GET", path, undefined, options);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  put(path, body = {}) {
    return this.request("PUT", path, body);
  }

  del(path) {
    return this.request("DELETE", path);
  }
}
