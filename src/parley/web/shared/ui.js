// Small DOM helpers shared by the pages.

/** Creates an element: h("div", {class: "x", onclick: f}, child, "text", ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/**
 * Shows an error in `box` the way the API reported it: HTTP status, error.type and
 * error.message from the envelope (api-spec §12), and the request id to quote.
 */
export function showError(box, error, { hint = "" } = {}) {
  const title = [];
  if (error.status) title.push(h("span", { class: "error-status" }, String(error.status)));
  if (error.type) title.push(h("code", { class: "error-type" }, error.type));
  const where = error.midStream
    ? h("p", { class: "error-note" }, "Sent as an error event after the stream had started.")
    : null;
  const parts = [
    h("div", { class: "error-title" }, ...title),
    h("p", { class: "error-message" }, error.message ?? String(error)),
    where,
    error.requestId ? h("p", { class: "error-id" }, "request-id: ", h("code", {}, error.requestId)) : null,
    hint ? h("p", { class: "error-hint" }, hint) : null,
  ];
  box.replaceChildren(...parts.filter(Boolean));
  box.hidden = false;
}

export function hideError(box) {
  box.hidden = true;
  box.replaceChildren();
}

/** Formats milliseconds for people: "412 ms", "3.2 s". */
export function formatMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Fills a <select> with models, keeping the current (or `preferred`) choice. Options
 * read "Display name (id)", or just the display name with `short`.
 */
export function fillModelPicker(select, models, preferred, { markTextOnly = false, short = false } = {}) {
  const previous = select.value || preferred;
  select.replaceChildren(
    ...models.map((m) => {
      const images = m.capabilities?.image_input?.supported;
      const named = m.display_name && m.display_name !== m.id;
      const label = named ? (short ? m.display_name : `${m.display_name} (${m.id})`) : m.id;
      return h("option", { value: m.id }, markTextOnly && images === false ? `${label} · text only` : label);
    }),
  );
  if (models.some((m) => m.id === previous)) select.value = previous;
  select.disabled = models.length === 0;
}
