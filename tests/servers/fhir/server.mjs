// Test-only FHIR R4 server: Medplum's FHIR router over an in-memory store, served over HTTP on
// loopback with the behaviour of a real server (HAPI FHIR) that the router alone lacks.
//
// Usage: node --experimental-websocket server.mjs [--port 0] [--host 127.0.0.1]
// Prints one JSON line {"port": N, "base_url": "http://127.0.0.1:N/fhir"} on stdout when ready.
// Exits when stdin closes (so it never outlives the pytest process that started it) or on SIGTERM.
//
// FHIR base: /fhir (as HAPI's default http://host:8080/fhir). Control endpoints outside the base:
//   POST /_harness/reset   empties the store and forgets search pages (204)
//   GET  /_harness/health  200 {"status": "ok"}
import { createServer } from 'node:http';
import { getStatus, isOk, normalizeOperationOutcome } from '@medplum/core';
import { FhirRouter } from '@medplum/fhir-router';
import { buildCapabilityStatement, loadDefinitions } from './definitions.mjs';
import { HarnessRepository } from './repository.mjs';
import { SearchPager } from './paging.mjs';

const BASE_PATH = '/fhir';
const FHIR_JSON = 'application/fhir+json;charset=utf-8';
const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json-patch+json'];

loadDefinitions();
const repo = new HarnessRepository();
const router = new FhirRouter();
const pager = new SearchPager(router, repo);
const capability = buildCapabilityStatement();
// One request at a time: a transaction's snapshot/restore must not interleave with other writes.
let queue = Promise.resolve();

function parseArgs(argv) {
  const args = { port: 0, host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--port') args.port = Number.parseInt(argv[i + 1], 10);
    else if (argv[i] === '--host') args.host = argv[i + 1];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return args;
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { 'Content-Type': FHIR_JSON }),
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendOutcome(res, outcome) {
  send(res, getStatus(outcome), outcome);
}

/** Headers that describe one stored version: ETag W/"n", Last-Modified (FHIR R4 http.html#versioning). */
function versionHeaders(resource) {
  const meta = resource?.meta;
  if (!meta?.versionId) return {};
  return {
    ETag: `W/"${meta.versionId}"`,
    'Last-Modified': new Date(meta.lastUpdated).toUTCString(),
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Parses the request body by content type; returns {body} or {error: OperationOutcome-ish}. */
function parseBody(req, text) {
  if (!text) return { body: undefined };
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') {
    return { body: queryRecord(new URLSearchParams(text)) };
  }
  if (!JSON_TYPES.includes(type)) {
    return { error: [415, `Unsupported content type: ${type || '<none>'}; send application/fhir+json`] };
  }
  try {
    return { body: JSON.parse(text) };
  } catch {
    return { error: [400, 'Request body is not valid JSON'] };
  }
}

/** URLSearchParams -> {name: value | [values]} as Medplum's parseSearchRequest expects. */
function queryRecord(params) {
  const out = {};
  for (const key of new Set(params.keys())) {
    if (key === '_format' || key === '_pretty') continue;
    const values = params.getAll(key);
    out[key] = values.length === 1 ? values[0] : values;
  }
  return out;
}

function outcome(status, text) {
  const code = status === 404 ? 'not-found' : status === 415 ? 'not-supported' : 'invalid';
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text } }],
  };
}

/** Runs the router; returns [OperationOutcome, resource?]. */
async function route(method, url, body, query, headers) {
  const config = { transactions: false }; // atomicity is ours: see handleBundle
  return router.handleRequest({ method, url, pathname: '', body, params: {}, query, headers, config }, repo);
}

/** Adds ETag/Last-Modified/_history Location to batch and transaction entry responses. */
function decorateBundleResponse(bundle, request) {
  for (const [i, entry] of (bundle.entry ?? []).entries()) {
    const resource = entry?.resource;
    const method = request.entry?.[i]?.request?.method;
    if (!entry?.response || !resource?.meta?.versionId) continue;
    // HAPI answers 201 for an update that created the resource (http.html#upsert).
    if (method === 'PUT' && entry.response.status === '200' && resource.meta.versionId === '1') {
      entry.response.status = '201';
    }
    entry.response.etag = `W/"${resource.meta.versionId}"`;
    entry.response.lastModified = resource.meta.lastUpdated;
    if (entry.response.location) {
      entry.response.location = `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return bundle;
}

/** POST [base] with a batch or transaction Bundle (FHIR R4 http.html#transaction). */
async function handleBundle(res, body, headers) {
  const isTransaction = body?.resourceType === 'Bundle' && body.type === 'transaction';
  const snapshot = isTransaction ? repo.snapshot() : undefined;
  const [result, bundle] = await route('POST', '', body, {}, headers);
  const failed = isTransaction
    ? (bundle?.entry ?? []).find((e) => e && Number.parseInt(e.response?.status, 10) >= 400)
    : undefined;
  if (!isOk(result) || failed) {
    // All or nothing: put the store back as it was before the transaction.
    if (snapshot) repo.restore(snapshot);
    const failure = failed ? failed.response.outcome : result;
    const status = failed ? Number.parseInt(failed.response.status, 10) : getStatus(result);
    send(res, status, failure);
    return;
  }
  send(res, 200, decorateBundleResponse(bundle, body));
}

/** Applies the Prefer header (FHIR R4 http.html#ops) to a write's response body. */
function preferredBody(req, result, resource) {
  const prefer = req.headers.prefer ?? '';
  if (prefer.includes('return=minimal')) return undefined;
  if (prefer.includes('return=OperationOutcome')) return result;
  return resource;
}

async function handleWrite(req, res, method, rel, body, query) {
  const [type, id] = rel.split('/');
  const existedBefore = method === 'PUT' && id ? repo.exists(type, id) : true;
  const [result, resource] = await route(method, rel, body, query, req.headers);
  if (!isOk(result)) {
    sendOutcome(res, result);
    return;
  }
  let status = getStatus(result);
  if (method === 'PUT' && !existedBefore) status = 201; // update as create (http.html#upsert)
  const headers = versionHeaders(resource);
  if (resource?.id && (status === 201 || method === 'PUT')) {
    headers.Location = `${baseUrl(req)}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  send(res, status, preferredBody(req, result, resource), headers);
}

function baseUrl(req) {
  return `http://${req.headers.host}${BASE_PATH}`;
}

async function handleFhir(req, res, url, rel) {
  const method = req.method;
  const query = queryRecord(url.searchParams);
  const parsed = parseBody(req, await readBody(req));
  if (parsed.error) {
    send(res, parsed.error[0], outcome(...parsed.error));
    return;
  }
  const body = parsed.body;
  const segments = rel.split('/').filter(Boolean);
  const base = baseUrl(req);

  if (method === 'GET' && rel === 'metadata') return send(res, 200, capability);
  if (method === 'GET' && rel === '' && query._getpages) return pager.page(res, send, base, query);
  if (method === 'POST' && rel === '') return handleBundle(res, body, req.headers);
  if (segments.length > 0 && !segments[0].startsWith('$') && !pager.isKnownType(segments[0])) {
    return send(res, 404, outcome(404, `Unknown resource type: ${segments[0]}`));
  }
  if (method === 'GET' && segments.length === 1) return pager.search(res, send, base, segments[0], query);
  if (method === 'POST' && segments.length === 2 && segments[1] === '_search') {
    return pager.search(res, send, base, segments[0], { ...query, ...(body ?? {}) });
  }
  if (['POST', 'PUT', 'PATCH'].includes(method)) return handleWrite(req, res, method, rel, body, query);

  const [result, resource] = await route(method, rel, body, query, req.headers);
  if (!isOk(result)) return sendOutcome(res, result);
  if (method === 'DELETE') return send(res, 200, result);
  return send(res, 200, resource, versionHeaders(resource));
}

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname.replace(/\/+$/, '');
  if (path === '/_harness/health') return send(res, 200, { status: 'ok' });
  if (path === '/_harness/reset' && req.method === 'POST') {
    repo.clear();
    pager.forget();
    return send(res, 204, undefined);
  }
  if (path !== BASE_PATH && !path.startsWith(`${BASE_PATH}/`)) {
    return send(res, 404, outcome(404, `Not a FHIR path; the base is ${BASE_PATH}`));
  }
  return handleFhir(req, res, url, path.slice(BASE_PATH.length + 1));
}

function serialised(req, res) {
  queue = queue.then(async () => {
    try {
      await handle(req, res);
    } catch (err) {
      if (!res.headersSent) sendOutcome(res, normalizeOperationOutcome(err));
      else res.destroy();
      process.stderr.write(`fhir harness: ${err?.stack ?? err}\n`);
    }
  });
}

const args = parseArgs(process.argv.slice(2));
const server = createServer(serialised);
server.keepAliveTimeout = 30_000;
server.listen(args.port, args.host, () => {
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ port, base_url: `http://${args.host}:${port}${BASE_PATH}` })}\n`);
});
function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
