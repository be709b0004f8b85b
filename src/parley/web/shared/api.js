// The public Claude API from a browser page: the headers every call carries, the
// error envelope (api-spec §12) and streamed messages (api-spec §6).
import { readEvents } from "./sse.js";

export const API_VERSION = "2023-06-01";
// Without it a request that has an Origin is refused with a 401 (api-spec §14).
export const BROWSER_OPT_IN = "anthropic-dangerous-direct-browser-access";

/** An error from the API (its envelope), or from reaching it (status 0). */
export class ApiError extends Error {
  constructor({ status, type, message, requestId = null, midStream = false }) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.requestId = requestId;
    this.midStream = midStream;
  }
}

export class Client {
  constructor({ baseUrl, apiKey }) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = apiKey;
  }

  headers() {
    return {
      "x-api-key": this.apiKey,
      "anthropic-version": API_VERSION,
      "content-type": "application/json",
      [BROWSER_OPT_IN]: "true",
    };
  }

  /** Sends one request; resolves to the Response when it is 2xx, else throws ApiError. */
  async send(method, path, body = undefined, signal = undefined) {
    const url = this.baseUrl + path;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: this.headers(),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      // The browser says no more than this: the server is down, the URL is wrong, or
      // the response was not allowed by CORS (the reason is only in the console).
      throw new ApiError({
        status: 0,
        type: "connection_error",
        message: `Could not reach ${url} (${error.message}). Check the base URL and that the server is running.`,
      });
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  /**
   * Uploads a file with the Files API (multipart; the browser writes the boundary) and
   * resolves to its metadata: `{id, filename, mime_type, size_bytes, ...}`.
   */
  async uploadFile(file, signal = undefined) {
    const url = `${this.baseUrl}/v1/files`;
    const form = new FormData();
    form.append("file", file, file.name);
    const { "content-type": _json, ...headers } = this.headers();
    let response;
    try {
      response = await fetch(url, { method: "POST", headers, body: form, signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError({ status: 0, type: "connection_error", message: `Could not reach ${url} (${error.message}).` });
    }
    if (!response.ok) throw await errorFrom(response);
    return response.json();
  }

  /** All models, following pages (api-spec §10). */
  async listModels() {
    const models = [];
    let after = null;
    for (;;) {
      const query = new URLSearchParams({ limit: "1000" });
      if (after) query.set("after_id", after);
      const page = await (await this.send("GET", `/v1/models?${query}`)).json();
      models.push(...page.data);
      if (!page.has_more || !page.last_id) return models;
      after = page.last_id;
    }
  }

  /**
   * Streams a message. Yields {event, data} for each named event, in order, and
   * throws ApiError for an `event: error` frame (api-spec §6.4). `onResponse` sees
   * the Response once its headers have arrived.
   */
  async *stream(params, { signal, onResponse = () => {} } = {}) {
    const response = await this.send("POST", "/v1/messages", { ...params, stream: true }, signal);
    const requestId = response.headers.get("request-id");
    onResponse(response);
    for await (const { event, data } of readEvents(response.body)) {
      if (event === "error") {
        throw new ApiError({
          status: response.status,
          type: data?.error?.type ?? "api_error",
          message: data?.error?.message ?? "The stream reported an error.",
          requestId,
          midStream: true,
        });
      }
      yield { event, data };
    }
  }
}

async function errorFrom(response) {
  const requestId = response.headers.get("request-id");
  const text = await response.text();
  let envelope = null;
  try {
    envelope = JSON.parse(text);
  } catch {
    // Not JSON (a proxy's page, say): show the text itself.
  }
  const error = envelope?.error;
  return new ApiError({
    status: response.status,
    type: error?.type ?? "unknown_error",
    message: error?.message ?? (text.trim() || response.statusText || "No error message"),
    requestId: requestId ?? envelope?.request_id ?? null,
  });
}

/**
 * Folds stream events into what a page shows: text so far, stop reason, usage,
 * time to first token. `onText(delta)` is called for each text delta.
 */
export class MessageProgress {
  constructor({ onText = () => {} } = {}) {
    this.onText = onText;
    this.startedAt = performance.now();
    this.firstTokenMs = null;
    this.totalMs = null;
    this.text = "";
    this.model = null;
    this.stopReason = null;
    this.stopSequence = null;
    this.inputTokens = null;
    this.outputTokens = null;
    this.requestId = null;
    this.done = false;
  }

  apply({ event, data }) {
    switch (event) {
      case "message_start":
        this.model = data.message.model;
        this.inputTokens = data.message.usage?.input_tokens ?? null;
        // Its output_tokens is a placeholder (api-spec §6.3); the count comes with message_delta.
        break;
      case "content_block_delta":
        if (data.delta.type === "text_delta") {
          if (this.firstTokenMs === null) this.firstTokenMs = performance.now() - this.startedAt;
          this.text += data.delta.text;
          this.onText(data.delta.text);
        }
        break;
      case "message_delta":
        this.stopReason = data.delta.stop_reason;
        this.stopSequence = data.delta.stop_sequence ?? null;
        // Cumulative totals, not increments (api-spec §6.3).
        this.outputTokens = data.usage?.output_tokens ?? this.outputTokens;
        this.inputTokens = data.usage?.input_tokens ?? this.inputTokens;
        break;
      case "message_stop":
        this.done = true;
        break;
      default:
        break; // ping, block start/stop, and event types added later
    }
  }

  finish() {
    this.totalMs = performance.now() - this.startedAt;
  }
}
