// Forms shared by the queue and topic pages.

import { h, toast } from "./dom.js";

export function parseOptionalInt(text) {
  const value = Number.parseInt(text, 10);
  return Number.isFinite(value) && value > 0 ? value : null;
}

// The body is sent as JSON if it parses as JSON, else as a JSON string; headers must be a JSON object.
export function messageForm(testid, send) {
  const body = h("textarea", { name: "body", rows: "3", placeholder: '{"hello": "world"} or plain text', required: true });
  const headers = h("input", { name: "headers", placeholder: 'headers as JSON, e.g. {"source": "dashboard"}' });
  const form = h("form", { testid, className: "stack" }, body, headers, h("button", { type: "submit" }, "Publish"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let value;
    try {
      value = JSON.parse(body.value);
    } catch {
      value = body.value;
    }
    let parsedHeaders = {};
    if (headers.value.trim()) {
      try {
        parsedHeaders = JSON.parse(headers.value);
      } catch {
        toast("Headers must be a JSON object.", "error");
        return;
      }
    }
    try {
      await send({ body: value, headers: parsedHeaders });
      body.value = "";
    } catch (error) {
      toast(error.message, "error");
    }
  });
  return form;
}
