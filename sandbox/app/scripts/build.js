#!/usr/bin/env node
/*
 * Front-end build without dependencies (node >= 18): copies each entry to
 * public/build/assets/<name>-<hash>.<ext> and writes public/build/manifest.json
 * in the shape of a Vite manifest:
 *
 *   {"resources/js/app.js": {"file": "assets/app-1a2b3c4d.js", "src": "resources/js/app.js", "isEntry": true}}
 *
 * The hash is the content's sha256 (first 8 hex digits): the same sources give
 * the same files. The manifest is replaced atomically; the assets of the
 * previous manifest are kept (pages already served by an in-place deploy still
 * find them), older ones are removed.
 */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const buildDir = path.join(root, 'public', 'build');
const assetsDir = path.join(buildDir, 'assets');
const manifestPath = path.join(buildDir, 'manifest.json');
const entries = ['resources/css/app.css', 'resources/js/app.js'];

function readManifest(file) {
    try {
        return JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (error) {
        return {};
    }
}

function main() {
    const previous = readManifest(manifestPath);
    const manifest = {};

    fs.mkdirSync(assetsDir, { recursive: true });

    for (const entry of entries) {
        const source = path.join(root, entry);
        const content = fs.readFileSync(source);
        const hash = crypto.createHash('sha256').update(content).digest('hex').slice(0, 8);
        const ext = path.extname(entry);
        const file = 'assets/' + path.basename(entry, ext) + '-' + hash + ext;
        const target = path.join(buildDir, file);
        const tmp = target + '.' + process.pid + '.tmp';

        fs.writeFileSync(tmp, content);
        fs.renameSync(tmp, target);
        manifest[entry] = { file: file, src: entry, isEntry: true };
        console.log('  public/build/' + file + '  ' + content.length + ' B');
    }

    const tmpManifest = manifestPath + '.' + process.pid + '.tmp';
    fs.writeFileSync(tmpManifest, JSON.stringify(manifest, null, 2) + '\n');
    fs.renameSync(tmpManifest, manifestPath);

    const keep = new Set();
    for (const chunk of Object.values(manifest).concat(Object.values(previous))) {
        if (chunk && typeof chunk.file === 'string') {
            keep.add(path.basename(chunk.file));
        }
    }
    for (const name of fs.readdirSync(assetsDir)) {
        if (!keep.has(name)) {
            fs.rmSync(path.join(assetsDir, name), { force: true, recursive: true });
        }
    }

    console.log('  public/build/manifest.json  ' + Object.keys(manifest).length + ' entries');
}

try {
    main();
} catch (error) {
    console.error('build failed: ' + (error && error.message ? error.message : error));
    process.exit(1);
}
