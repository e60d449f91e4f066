// API documentation of every public subpath, from the doc comments: `npm run docs` (npm test builds it,
// and fails on any warning, so the docs cannot rot).
import { OptionDefaults } from "typedoc";

/** @type {Partial<import("typedoc").TypeDocOptions>} */
export default {
  name: "activeblaze",
  entryPoints: [
    "src/index.ts",
    "src/option-schemas.ts",
    "src/transport/index.ts",
    "src/security/index.ts",
    "src/wire/index.ts",
    "src/testing.ts",
    "src/jms/index.ts",
    "src/stomp/index.ts",
    "src/relay/index.ts",
    "src/diagnostics/index.ts",
    "src/otel.ts",
    "src/dashboard/index.ts",
    "src/adapters/node.ts",
    "src/adapters/bun.ts",
    "src/adapters/deno.ts",
    "src/adapters/node-crypto.ts",
    "src/security/web-crypto.ts",
  ],
  tsconfig: "tsconfig.docs.json",
  out: "docs/api",
  readme: "README.md",
  // No "defined in" source links: they would need the checkout's git remote, which a checkout need not have.
  disableSources: true,
  excludePrivate: true,
  excludeInternal: true,
  treatWarningsAsErrors: true,
  // The generated schema code marks its origin with @generated.
  blockTags: [...OptionDefaults.blockTags, "@generated"],
  validation: { notExported: true, invalidLink: true, notDocumented: false },
  // The constructor parameter by which a group or cluster channel names itself to the channel it runs on,
  // and the members by which a block built on a group channel takes part in it: internal.
  intentionallyNotExported: ["DescribedMember", "GroupChannelInternals"],
};
