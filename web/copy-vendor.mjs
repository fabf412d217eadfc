// Copy the built Leaflet assets from node_modules into the Python package
// (geoseg/serve/static/vendor/leaflet/), where they are committed with
// Leaflet's LICENSE and installed as package data: the page loads nothing
// from a CDN and works offline.
//
//   cd web && npm ci && npm run vendor
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "node_modules", "leaflet");
const dst = join(here, "..", "geoseg", "serve", "static", "vendor", "leaflet");
const pkg = JSON.parse(readFileSync(join(src, "package.json"), "utf8"));

rmSync(dst, { recursive: true, force: true });
mkdirSync(join(dst, "images"), { recursive: true });
for (const f of ["leaflet.js", "leaflet.css"]) cpSync(join(src, "dist", f), join(dst, f));
cpSync(join(src, "dist", "images"), join(dst, "images"), { recursive: true });
cpSync(join(src, "LICENSE"), join(dst, "LICENSE"));
writeFileSync(join(dst, "VERSION"), `leaflet ${pkg.version} (from the npm registry, web/package-lock.json)\n`);
console.log(`copied leaflet ${pkg.version} to ${dst}`);
