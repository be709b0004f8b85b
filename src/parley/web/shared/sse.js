// Server-sent events, read the way the official SDKs read them (api-spec §6.1):
// events are dispatched on their `event:` line; one without a name is dropped.

/** Splits decoded text into SSE events ({event, data}); feed it chunks as they arrive. */
export class SSEDecoder {
  #buffer = "";
  #event = null;
  #data = [];

  /** Returns the events completed by this chunk. */
  push(text) {
    this.#buffer += text;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      // A lone trailing "\r" may be the first half of "\r\n": wait for the next chunk.
      if (!match || (match[0] === "\r" && match.index === this.#buffer.length - 1)) break;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      const event = this.#line(line);
      if (event) events.push(event);
    }
    return events;
  }

  /** Call once the body has ended: returns an event left without its blank line, if any. */
  end() {
    const events = [];
    if (this.#buffer) {
      const event = this.#line(this.#buffer);
      if (event) events.push(event);
      this.#buffer = "";
    }
    const last = this.#line("");
    if (last) events.push(last);
    return events;
  }

  #line(line) {
    if (line === "") {
      if (this.#event === null && this.#data.length === 0) return null;
      const event = { event: this.#event, data: this.#data.join("\n") };
      this.#event = null;
      this.#data = [];
      return event;
    }
    if (line.startsWith(":")) return null; // a comment
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    return null;
  }
}

/** Yields the named events of a response body as {event, data} with data parsed as JSON. */
export async function* readEvents(body) {
  const decoder = new SSEDecoder();
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const events = done ? decoder.end() : decoder.push(value);
      for (const { event, data } of events) {
        if (event === null) continue;
        yield { event, data: data ? JSON.parse(data) : null };
      }
      if (done) return;
    }
  } finally {
    // Stops the download when the caller leaves early (Stop, or an error frame).
    reader.cancel().catch(() => {});
  }
}
