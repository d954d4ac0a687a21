// The library under test, as the benchmark servers see it. bench/run.mjs compiles ../src next to
// this file (into .bench/build); if the working tree's sources do not load, it substitutes the last
// package build (dist/esm) and says so in the report.
export * from '../src/index.js';
