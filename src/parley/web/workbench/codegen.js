// "Get code": one request body as Python SDK, TypeScript SDK and curl code, ready
// to paste. The key comes from ANTHROPIC_API_KEY, never from the page.
import { API_VERSION } from "../shared/api.js";

const WIDTH = 88;

/**
 * A Python or JavaScript literal for a JSON value, on one line when it fits after
 * `lead` characters; otherwise one item per line under `indent`.
 */
function literal(value, lang, indent, lead = indent.length) {
  const oneLine = flat(value, lang);
  if (lead + oneLine.length + 1 <= WIDTH || value === null || typeof value !== "object") {
    return oneLine;
  }
  const inner = indent + (lang === "python" ? "    " : "  ");
  if (Array.isArray(value)) {
    const items = value.map((item) => inner + literal(item, lang, inner));
    return `[\n${items.join(",\n")},\n${indent}]`;
  }
  const items = Object.entries(value).map(([key, item]) => {
    const head = `${inner}${objectKey(key, lang)}: `;
    return head + literal(item, lang, inner, head.length);
  });
  return `{\n${items.join(",\n")},\n${indent}}`;
}

function flat(value, lang) {
  if (value === null) return lang === "python" ? "None" : "null";
  if (value === true) return lang === "python" ? "True" : "true";
  if (value === false) return lang === "python" ? "False" : "false";
  // JSON string escapes are valid Python and JavaScript string escapes.
  if (typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((item) => flat(item, lang)).join(", ")}]`;
  const items = Object.entries(value).map(([k, v]) => `${objectKey(k, lang)}: ${flat(v, lang)}`);
  if (lang === "python") return `{${items.join(", ")}}`;
  return items.length ? `{ ${items.join(", ")} }` : "{}";
}

function objectKey(key, lang) {
  return lang !== "python" && /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key);
}

// API version 2026-10-21 removed the sampling parameters, and the SDKs that send it
// (Python 2.x, TypeScript 1.x) dropped them from their signatures; Python 1.x already
// had (api-version §19.4). A snippet that sets temperature therefore pins the version
// the Workbench itself speaks and passes temperature around the typed arguments.
const PIN_COMMENT = "temperature needs API version 2023-06-01 (2026-10-21 removed it)";

function splitTemperature(params) {
  const { temperature, ...rest } = params;
  return { temperature, rest };
}

export function pythonCode(baseUrl, params) {
  const { temperature, rest } = splitTemperature(params);
  const args = Object.entries(rest).map(([name, value]) => {
    const head = `    ${name}=`;
    return `${head}${literal(value, "python", "    ", head.length)},`;
  });
  const pin = [];
  if (temperature !== undefined) {
    pin.push(`    # ${PIN_COMMENT}.`, `    default_headers={"anthropic-version": "${API_VERSION}"},`);
    args.push(
      "    # The SDK's typed arguments no longer include it (SDK 1.x and later).",
      `    extra_body={"temperature": ${JSON.stringify(temperature)}},`,
    );
  }
  return [
    "import os",
    "",
    "import anthropic",
    "",
    "client = anthropic.Anthropic(",
    `    base_url=${JSON.stringify(baseUrl)},`,
    '    api_key=os.environ["ANTHROPIC_API_KEY"],',
    ...pin,
    ")",
    "",
    "message = client.messages.create(",
    ...args,
    ")",
    'print("".join(block.text for block in message.content if block.type == "text"))',
    "",
  ].join("\n");
}

export function typescriptCode(baseUrl, params) {
  const { temperature, rest } = splitTemperature(params);
  const entry = (name, value) => {
    const head = `  ${objectKey(name, "typescript")}: `;
    return `${head}${literal(value, "typescript", "  ", head.length)},`;
  };
  const fields = Object.entries(rest).map(([name, value]) => entry(name, value));
  const pin = [];
  if (temperature !== undefined) {
    pin.push(`  // ${PIN_COMMENT}.`, `  defaultHeaders: { "anthropic-version": "${API_VERSION}" },`);
    // After max_tokens, where the Workbench shows it; ts-ignore (not ts-expect-error)
    // so the line compiles with the 0.x types, which still have it, too.
    fields.splice(
      2,
      0,
      "  // @ts-ignore: not in the SDK's types since 1.x; still sent as written.",
      entry("temperature", temperature),
    );
  }
  return [
    'import Anthropic from "@anthropic-ai/sdk";',
    "",
    "const client = new Anthropic({",
    `  baseURL: ${JSON.stringify(baseUrl)},`,
    "  apiKey: process.env.ANTHROPIC_API_KEY,",
    ...pin,
    "});",
    "",
    "const message = await client.messages.create({",
    ...fields,
    "});",
    'console.log(message.content.map((block) => (block.type === "text" ? block.text : "")).join(""));',
    "",
  ].join("\n");
}

/** Single quotes keep the shell from touching the JSON; a quote inside it is closed, escaped and reopened. */
function shellQuote(text) {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export function curlCode(baseUrl, params) {
  return [
    `curl ${shellQuote(`${baseUrl}/v1/messages`)} \\`,
    '  --header "x-api-key: $ANTHROPIC_API_KEY" \\',
    `  --header "anthropic-version: ${API_VERSION}" \\`,
    '  --header "content-type: application/json" \\',
    `  --data ${shellQuote(JSON.stringify(params, null, 2))}`,
    "",
  ].join("\n");
}

export const SETUP = {
  python: "pip install anthropic, then run it with python.",
  typescript: "npm install @anthropic-ai/sdk, then run it as an ES module (for example main.mjs).",
  curl: "Paste it into a shell.",
};
