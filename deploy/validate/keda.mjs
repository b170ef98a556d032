// Validates every KEDA resource (keda.sh/*) in the given YAML files against the schemas of
// @kubernetes-models/keda, which kubernetes-validate does not know. Exits 1 on the first
// invalid resource, and when a file holds none it was asked to check.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import * as keda from '@kubernetes-models/keda/keda.sh/v1alpha1';

const files = process.argv.slice(2);
let checked = 0;
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) {
      console.error(`${file}: ${doc.errors[0].message}`);
      process.exit(1);
    }
    const resource = doc.toJS();
    if (!resource?.apiVersion?.startsWith('keda.sh/')) continue;
    const Model = keda[resource.kind];
    if (!Model) {
      console.error(`${file}: no KEDA schema for kind ${resource.kind}`);
      process.exit(1);
    }
    try {
      new Model(resource).validate();
    } catch (error) {
      console.error(`${file}: ${resource.kind}/${resource.metadata?.name}: ${error.message}`);
      process.exit(1);
    }
    for (const trigger of resource.spec?.triggers ?? []) {
      if (trigger.type === 'redis' && !/^\{[^}]+\}:q:[a-z_]+:ready$/.test(trigger.metadata?.listName ?? '')) {
        console.error(`${file}: ${resource.metadata.name}: listName ${trigger.metadata?.listName} is not a ready list`);
        process.exit(1);
      }
    }
    console.log(`ok ${file}: ${resource.kind}/${resource.metadata.name}`);
    checked += 1;
  }
}
if (checked === 0) {
  console.error(`no KEDA resources in ${files.join(', ')}`);
  process.exit(1);
}
