// Where the API is and which key to use: kept in this browser's localStorage, shared
// by every Parley page on the same origin. The key never leaves the browser except
// in the x-api-key header of the API calls themselves.
import { Client } from "./api.js";

const KEY = "parley.apiKey";
const BASE_URL = "parley.baseUrl";

/** The page's own origin: a page Parley serves talks to the Parley that served it. */
export function defaultBaseUrl() {
  return location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8000";
}

export function storedItem(name, fallback = "") {
  try {
    return localStorage.getItem(name) ?? fallback;
  } catch {
    return fallback; // storage disabled: the page still works for this visit
  }
}

export function storeItem(name, value) {
  try {
    if (value) localStorage.setItem(name, value);
    else localStorage.removeItem(name);
  } catch {
    // storage disabled
  }
}

/**
 * Wires a connection form (#base-url, #api-key, #forget-key, #key-state inside it).
 * `onChange(client)` runs at start and whenever the key or base URL is saved; client
 * is null while there is no key.
 */
export function bindConnection(form, { onChange }) {
  const baseInput = form.querySelector("#base-url");
  const keyInput = form.querySelector("#api-key");
  const forget = form.querySelector("#forget-key");
  const state = form.querySelector("#key-state");

  baseInput.value = storedItem(BASE_URL) || defaultBaseUrl();
  baseInput.placeholder = defaultBaseUrl();
  keyInput.value = storedItem(KEY);

  const current = () => {
    const apiKey = keyInput.value.trim();
    const baseUrl = baseInput.value.trim() || defaultBaseUrl();
    return apiKey ? new Client({ baseUrl, apiKey }) : null;
  };
  const show = () => {
    const saved = Boolean(storedItem(KEY));
    state.textContent = saved ? "Key saved in this browser" : "No key saved";
    state.classList.toggle("ok", saved);
    forget.hidden = !saved;
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const baseUrl = baseInput.value.trim().replace(/\/+$/, "");
    storeItem(BASE_URL, baseUrl === defaultBaseUrl() ? "" : baseUrl);
    baseInput.value = baseUrl || defaultBaseUrl();
    storeItem(KEY, keyInput.value.trim());
    show();
    onChange(current());
  });
  forget.addEventListener("click", () => {
    storeItem(KEY, "");
    keyInput.value = "";
    show();
    onChange(null);
    keyInput.focus();
  });

  show();
  onChange(current());
  return { current };
}
