// In-memory FHIR R4 store for the test harness: Medplum's MemoryRepository plus what a real
// server (HAPI FHIR) does and the bare repository does not.
//
// - Structural validation on every write (create, update, patch; also inside batch and
//   transaction bundles, which call the same methods) with Medplum's validateResource:
//   cardinality (e.g. Observation.status 1..1, RiskAssessment.subject 1..1), unknown elements,
//   primitive formats, unknown resource types. Terminology bindings are not checked.
// - Version ids "1", "2", ... per resource like HAPI (Medplum uses random UUIDs); they travel as
//   Resource.meta.versionId and the ETag W/"n" (FHIR R4 http.html#versioning).
// - 410 Gone when reading a deleted resource (FHIR R4 http.html#read), 404 when it never existed.
// - snapshot()/restore() so the harness can make transactions atomic: the router's
//   withTransaction on MemoryRepository is a plain callback (FHIR R4 http.html#transaction
//   requires all-or-nothing).
import {
  OperationOutcomeError,
  allOk,
  badRequest,
  created,
  gone,
  isResourceType,
  multipleMatches,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';

/** MemoryRepository that validates writes, numbers versions, and can snapshot its state. */
export class HarnessRepository extends MemoryRepository {
  constructor() {
    super();
    /** @type {Set<string>} "Type/id" of resources deleted and not re-created. */
    this.deleted = new Set();
  }

  /** Throws an OperationOutcomeError (400) when the resource is structurally invalid. */
  validate(resource) {
    if (!resource || typeof resource !== 'object' || !isResourceType(resource.resourceType)) {
      throw new OperationOutcomeError(
        badRequest(`Unknown resource type: ${resource?.resourceType ?? '<missing>'}`, 'resourceType'),
      );
    }
    try {
      // Medplum caps base64Binary at 1 MB by default; DICOM-sized attachments exceed it.
      validateResource(resource, { base64BinaryMaxBytes: 256 * 1024 * 1024 });
    } catch (err) {
      throw new OperationOutcomeError(normalizeOperationOutcome(err));
    }
  }

  /** Whether a current (not deleted) version of Type/id exists. */
  exists(resourceType, id) {
    return Boolean(this.resources.get(resourceType)?.has(id));
  }

  async createResource(resource, options, update = false) {
    this.validate(resource);
    const copy = structuredClone(resource);
    const previous = copy.id ? (this.history.get(copy.resourceType)?.get(copy.id)?.length ?? 0) : 0;
    copy.meta = { ...(copy.meta ?? {}), versionId: String(previous + 1) };
    copy.meta.lastUpdated = new Date().toISOString();
    // Seeding mode makes MemoryRepository keep the meta we set; the synchronous body of the
    // parent's createResource runs before this call returns, so the flag is reset in time.
    this.seeding = true;
    let result;
    try {
      result = super.createResource(copy, options, update);
    } finally {
      this.seeding = false;
    }
    const created = await result;
    this.deleted.delete(`${created.resourceType}/${created.id}`);
    return created;
  }

  async conditionalCreate(resource, search, options) {
    // The parent creates through a private path that would skip validation and versioning.
    this.validate(resource);
    if (search.resourceType !== resource.resourceType) {
      throw new OperationOutcomeError(badRequest('Search type must match resource type'));
    }
    const matches = this.searchSync({ ...search, count: 2, offset: 0, sortRules: undefined }).entry ?? [];
    if (matches.length > 1) {
      throw new OperationOutcomeError(multipleMatches);
    }
    if (matches.length === 1) {
      return { resource: matches[0].resource, outcome: allOk };
    }
    return { resource: await this.createResource(resource, options), outcome: created };
  }

  async readResource(resourceType, id) {
    if (this.deleted.has(`${resourceType}/${id}`)) {
      throw new OperationOutcomeError(gone);
    }
    return super.readResource(resourceType, id);
  }

  async readHistory(resourceType, id) {
    await super.readResource(resourceType, id);
    // MemoryRepository reverses its stored array in place; copy first (newest first, R4 history).
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: versions.length,
      entry: versions.map((v) => ({ resource: structuredClone(v) })),
    };
  }

  async deleteResource(resourceType, id, options) {
    await super.deleteResource(resourceType, id, options);
    this.deleted.add(`${resourceType}/${id}`);
  }

  /** Empties the store. */
  clear() {
    super.clear();
    this.deleted.clear();
  }

  /** Copies the store's state. Stored resources are never mutated in place, so copying the
   * maps and arrays (not the resources) is enough. */
  snapshot() {
    const copyMaps = (outer, copyValue) =>
      new Map([...outer].map(([type, inner]) => [type, new Map([...inner].map(([k, v]) => [k, copyValue(v)]))]));
    return {
      resources: copyMaps(this.resources, (r) => r),
      history: copyMaps(this.history, (versions) => [...versions]),
      deleted: new Set(this.deleted),
    };
  }

  /** Puts back a state taken by snapshot(). */
  restore(state) {
    this.resources.clear();
    this.history.clear();
    this.deleted.clear();
    for (const [type, inner] of state.resources) this.resources.set(type, inner);
    for (const [type, inner] of state.history) this.history.set(type, inner);
    for (const key of state.deleted) this.deleted.add(key);
  }
}
