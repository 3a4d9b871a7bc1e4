// Pulumi's runtime loads npm's Arborist, and with it pacote, sigstore and some 450 modules,
// to find the packages a function serialized into a cloud resource needs. No stack here
// serializes a function, yet every test file that loads Pulumi loaded them all again (jest
// gives each file its own module registry). The unit tests map the package to this module,
// which fails loudly if anything does use it.
"use strict";

class Arborist {
  constructor() {
    throw new Error(
      "@npmcli/arborist is not loaded in the unit tests (jest.config.js moduleNameMapper): " +
        "Pulumi's function serialization is not supported there",
    );
  }
}

module.exports = { Arborist };
