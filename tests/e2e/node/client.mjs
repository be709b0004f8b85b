// Drive a Parley server with the official TypeScript SDK and print one JSON object.
//
//   node client.mjs BASE_URL API_KEY PACKAGE [MODEL] [MAX_TOKENS] [PROMPT] [--faults]
//
// PACKAGE is `@anthropic-ai/sdk` (1.x: anthropic-version 2026-10-21, Bearer) or
// `anthropic-sdk-0` (0.120 under an alias name: 2023-06-01, X-Api-Key).
// Run by tests/e2e/test_typescript_sdk.py; each case reports its outcome instead
// of throwing, so the test can assert on all of them.

// --faults: also ask the scripted engine for an `event: error` mid-stream (api-spec §6.4).
const faults = process.argv.includes("--faults");
const positional = process.argv.slice(2).filter((arg) => arg !== "--faults");
const [baseURL, apiKey, pkg, model = "scripted", maxTokensArg = "50", prompt = "count: 5"] =
  positional;
if (!baseURL || !apiKey || !pkg) {
  console.error("usage: node client.mjs BASE_URL API_KEY PACKAGE [MODEL] [MAX_TOKENS] [PROMPT]");
  process.exit(2);
}
const maxTokens = Number(maxTokensArg);

const { default: Anthropic } = await import(pkg);
const { VERSION } = await import(`${pkg}/version`);

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });

function errorInfo(err) {
  return {
    class: err?.constructor?.name,
    isNotFound: err instanceof Anthropic.NotFoundError,
    isAPIError: err instanceof Anthropic.APIError,
    status: err?.status ?? null,
    requestID: err?.requestID ?? null,
    type: err?.error?.error?.type ?? null,
    message: err?.error?.error?.message ?? String(err?.message ?? err),
    textsBefore: err?.texts ?? null,
  };
}

function textOf(message) {
  return message.content
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("");
}

async function run(name, results, fn) {
  try {
    results[name] = { ok: true, ...(await fn()) };
  } catch (err) {
    results[name] = { ok: false, error: errorInfo(err) };
  }
}

const results = { package: pkg, version: VERSION };

await run("create", results, async () => {
  const { data: message, response } = await client.messages
    .create({ model, max_tokens: maxTokens, messages: [{ role: "user", content: prompt }] })
    .withResponse();
  return {
    id: message.id,
    model: message.model,
    text: textOf(message),
    stopReason: message.stop_reason,
    usage: message.usage,
    requestID: response.headers.get("request-id"),
  };
});

await run("stream", results, async () => {
  const texts = [];
  const events = [];
  const stream = client.messages
    .stream({ model, max_tokens: maxTokens, messages: [{ role: "user", content: prompt }] })
    .on("text", (delta) => texts.push(delta))
    .on("streamEvent", (event) => events.push(event.type));
  const final = await stream.finalMessage();
  return {
    texts,
    events,
    finalText: textOf(final),
    stopReason: final.stop_reason,
    usage: final.usage,
  };
});

await run("notFound", results, async () => {
  await client.messages.create({
    model: "no-such-model",
    max_tokens: 5,
    messages: [{ role: "user", content: "hi" }],
  });
  return {};
});

if (faults) {
  await run("errorMidStream", results, async () => {
    const texts = [];
    const stream = client.messages
      .stream({
        model,
        max_tokens: maxTokens,
        messages: [{ role: "user", content: "say: a b\nfail: overloaded_error" }],
      })
      .on("text", (delta) => texts.push(delta));
    try {
      await stream.finalMessage();
    } catch (err) {
      // Report what arrived before the error along with it.
      err.texts = texts;
      throw err;
    }
    return { texts };
  });
}

console.log(JSON.stringify(results));
