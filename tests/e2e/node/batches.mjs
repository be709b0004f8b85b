// Message Batches through the official TypeScript SDK (api-spec §11); prints one JSON object.
//
//   node batches.mjs BASE_URL API_KEY PACKAGE MODEL
//
// Creates a batch of three requests (one with invalid params), polls `retrieve` until
// it has ended, then reads `results()`. Run by tests/batches/test_typescript_sdk.py.

const [baseURL, apiKey, pkg, model] = process.argv.slice(2);
if (!baseURL || !apiKey || !pkg || !model) {
  console.error("usage: node batches.mjs BASE_URL API_KEY PACKAGE MODEL");
  process.exit(2);
}

const { default: Anthropic } = await import(pkg);
const { VERSION } = await import(`${pkg}/version`);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });

const request = (customId, content, extra = {}) => ({
  custom_id: customId,
  params: { model, max_tokens: 20, messages: [{ role: "user", content }], ...extra },
});

const created = await client.messages.batches.create({
  requests: [
    request("first", "say: hello batch"),
    request("second", "count: 3"),
    request("broken", "say: x", { max_tokens: -1 }),
  ],
});

let batch = created;
const deadline = Date.now() + 60_000;
while (batch.processing_status !== "ended") {
  if (Date.now() > deadline) throw new Error(`batch did not end: ${JSON.stringify(batch)}`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  batch = await client.messages.batches.retrieve(created.id);
}

const results = [];
for await (const line of await client.messages.batches.results(created.id)) {
  results.push(line);
}

let notFound = null;
try {
  await client.messages.batches.retrieve("msgbatch_01nosuchbatchatall");
} catch (err) {
  notFound = { isNotFound: err instanceof Anthropic.NotFoundError, status: err.status };
}

console.log(JSON.stringify({ version: VERSION, created, ended: batch, results, notFound }));
