// Search with HAPI-style paging (FHIR R4 http.html#paging, search.html#count).
//
// Every searchset Bundle gets Bundle.link "self", and "next"/"previous" when there are more
// pages. Page links are opaque, like HAPI's `[base]?_getpages=<id>&_getpagesoffset=N&_count=C`:
// the id names a search this server remembers, so clients must follow links, never build them.
// Default page size 20, maximum 200 (HAPI's defaults); `_count` above the maximum is clamped.
// Each entry gets Bundle.entry.fullUrl and Bundle.entry.search.mode ("match" or "include").
// Unlike HAPI, a page is computed from the live store when requested (HAPI caches results).
import { randomUUID } from 'node:crypto';
import { getResourceTypes, getStatus, isOk } from '@medplum/core';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 200;
const MAX_REMEMBERED_SEARCHES = 10_000;
const PAGING_PARAMS = new Set(['_count', '_offset', '_getpages', '_getpagesoffset', '_bundletype']);

function pageSize(value) {
  const n = Number.parseInt(value ?? '', 10);
  if (!Number.isFinite(n) || n < 0) return DEFAULT_PAGE_SIZE;
  return Math.min(n, MAX_PAGE_SIZE);
}

function gone() {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'not-found', details: { text: 'Search page id is unknown or expired' } }],
  };
}

/** Runs type-level searches through the router and pages them with opaque links. */
export class SearchPager {
  constructor(router, repo) {
    this.router = router;
    this.repo = repo;
    this.knownTypes = new Set(getResourceTypes());
    /** @type {Map<string, {type: string, params: object}>} */
    this.searches = new Map();
  }

  isKnownType(type) {
    return this.knownTypes.has(type);
  }

  /** Forgets every remembered search (their page links then answer 410 Gone). */
  forget() {
    this.searches.clear();
  }

  /** GET [base]/[type]?params: the first page. */
  async search(res, send, base, type, query) {
    const params = Object.fromEntries(Object.entries(query).filter(([k]) => !PAGING_PARAMS.has(k)));
    const offset = Math.max(0, Number.parseInt(query._offset ?? '0', 10) || 0);
    await this.respond(res, send, base, { type, params, id: undefined }, offset, pageSize(query._count));
  }

  /** GET [base]?_getpages=...: a later page of a remembered search. */
  async page(res, send, base, query) {
    const search = this.searches.get(String(query._getpages));
    if (!search) {
      send(res, 410, gone());
      return;
    }
    const offset = Math.max(0, Number.parseInt(query._getpagesoffset ?? '0', 10) || 0);
    await this.respond(res, send, base, { ...search, id: String(query._getpages) }, offset, pageSize(query._count));
  }

  remember(search) {
    if (search.id) return search.id;
    if (this.searches.size >= MAX_REMEMBERED_SEARCHES) {
      this.searches.delete(this.searches.keys().next().value);
    }
    const id = randomUUID();
    this.searches.set(id, { type: search.type, params: search.params });
    return id;
  }

  async respond(res, send, base, search, offset, requestedCount) {
    // _summary=count: only Bundle.total, no entries (FHIR R4 search.html#summary).
    const count = search.params._summary === 'count' ? 0 : requestedCount;
    const query = { ...search.params, _count: String(count), _offset: String(offset) };
    const request = { method: 'GET', url: search.type, pathname: '', body: undefined, params: {}, query };
    const [result, bundle] = await this.router.handleRequest({ ...request, config: {} }, this.repo);
    if (!isOk(result)) {
      send(res, getStatus(result), result);
      return;
    }
    for (const entry of bundle.entry ?? []) {
      entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
      entry.search = { mode: entry.search?.mode ?? 'match', ...entry.search };
    }
    const matches = (bundle.entry ?? []).filter((e) => e.search.mode === 'match').length;
    const total = bundle.total;
    const hasNext = count > 0 && (total === undefined ? matches >= count : offset + count < total);
    const link = [{ relation: 'self', url: this.selfUrl(base, search, offset, count) }];
    if (hasNext || offset > 0) {
      const id = this.remember(search);
      const pageUrl = (at) => `${base}?_getpages=${id}&_getpagesoffset=${at}&_count=${count}&_bundletype=searchset`;
      if (hasNext) link.push({ relation: 'next', url: pageUrl(offset + count) });
      if (offset > 0) link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
    }
    if (search.params._total === 'none') delete bundle.total;
    send(res, 200, { resourceType: 'Bundle', id: randomUUID(), type: 'searchset', ...bundle, link });
  }

  selfUrl(base, search, offset, count) {
    if (search.id) {
      return `${base}?_getpages=${search.id}&_getpagesoffset=${offset}&_count=${count}&_bundletype=searchset`;
    }
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(search.params)) {
      for (const item of Array.isArray(v) ? v : [v]) qs.append(k, item);
    }
    if (offset > 0) qs.append('_offset', String(offset));
    const text = qs.toString();
    return `${base}/${search.type}${text ? `?${text}` : ''}`;
  }
}
