// The Files API through the official TypeScript SDK: upload a file, list, retrieve its
// metadata, read it from a message as a document, download (refused), delete.
//
//   node files.mjs BASE_URL API_KEY PACKAGE MODEL FILE_PATH
//
// Run by tests/e2e/test_files_sdk.py; each step reports its outcome instead of throwing.
import fs from "node:fs";

const [baseURL, apiKey, pkg, model, filePath] = process.argv.slice(2);
const { default: Anthropic, toFile } = await import(pkg);
const { VERSION } = await import(`${pkg}/version`);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });

async function run(name, results, fn) {
  try {
    results[name] = { ok: true, ...(await fn()) };
  } catch (err) {
    results[name] = {
      ok: false,
      status: err?.status ?? null,
      type: err?.error?.error?.type ?? null,
      errorCode: err?.error?.error?.details?.error_code ?? null,
      message: err?.error?.error?.message ?? String(err?.message ?? err),
    };
  }
}

const results = { package: pkg, version: VERSION };
let fileId = null;

await run("upload", results, async () => {
  const file = await toFile(fs.createReadStream(filePath), "treaty.pdf", {
    type: "application/pdf",
  });
  const meta = await client.beta.files.upload({ file });
  fileId = meta.id;
  return { meta };
});

await run("list", results, async () => {
  const ids = [];
  for await (const meta of client.beta.files.list({ limit: 1 })) ids.push(meta.id);
  return { ids };
});

await run("retrieve", results, async () => ({
  meta: await client.beta.files.retrieveMetadata(fileId),
}));

await run("message", results, async () => {
  const message = await client.beta.messages.create({
    model,
    max_tokens: 300,
    messages: [
      {
        role: "user",
        content: [
          {
            type: "document",
            source: { type: "file", file_id: fileId },
            citations: { enabled: true },
          },
          { type: "text", text: "cite: 42 km" },
        ],
      },
    ],
  });
  return { content: message.content };
});

await run("download", results, async () => {
  await client.beta.files.download(fileId);
  return {};
});

await run("delete", results, async () => ({ deleted: await client.beta.files.delete(fileId) }));

await run("retrieveDeleted", results, async () => ({
  meta: await client.beta.files.retrieveMetadata(fileId),
}));

console.log(JSON.stringify(results));
