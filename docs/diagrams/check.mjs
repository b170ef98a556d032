// Parses and renders every Mermaid diagram (```mermaid fenced blocks) in the Markdown files
// under docs/, in Debian's Chromium driven by playwright-core, with no network: Mermaid's
// bundle is loaded from node_modules into a blank page. A block that fails to parse or render
// is reported with its file, line and Mermaid's error, and the check exits 1.
//
//   node docs/diagrams/check.mjs [--svg-dir DIR] [FILE.md ...]
//
// Without files it checks every docs/**/*.md. --svg-dir writes each rendered SVG there (for a
// look at the result). CHROMIUM_BIN names another Chromium (default /usr/bin/chromium).
import { readdirSync, readFileSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const docs = join(root, 'docs');
const require = createRequire(import.meta.url);
const mermaidBundle = require.resolve('mermaid/dist/mermaid.min.js');
const mermaidVersion = JSON.parse(readFileSync(join(dirname(mermaidBundle), '..', 'package.json'), 'utf8')).version;
const chromiumBin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const RENDER_TIMEOUT_MS = 30_000;

function parseArgs(argv) {
  const args = { svgDir: null, files: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--svg-dir') args.svgDir = resolve(argv[++i] ?? '');
    else if (argv[i].startsWith('--')) throw new Error(`unknown option ${argv[i]}`);
    else args.files.push(resolve(argv[i]));
  }
  return args;
}

/** Every Markdown file under `dir`, sorted, node_modules left out. */
function markdownFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...markdownFiles(path));
    else if (entry.name.endsWith('.md')) out.push(path);
  }
  return out.sort();
}

/**
 * The mermaid blocks of one Markdown text: `{ line, code }` with the 1-based line of the
 * opening fence, or `{ line, error }` for a block that is never closed. A fence is three or
 * more backticks or tildes, possibly indented (lists); it closes on the same character, at
 * least as long, with nothing after it.
 */
export function mermaidBlocks(text) {
  const lines = text.split(/\r?\n/);
  const blocks = [];
  let open = null; // { fence, indent, line, mermaid, body }
  lines.forEach((raw, i) => {
    if (!open) {
      const m = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)/.exec(raw);
      if (m) {
        open = { fence: m[2], indent: m[1].length, line: i + 1, mermaid: m[3] === 'mermaid', body: [] };
      }
      return;
    }
    const close = /^\s*(`{3,}|~{3,})\s*$/.exec(raw);
    if (close && close[1][0] === open.fence[0] && close[1].length >= open.fence.length) {
      if (open.mermaid) blocks.push({ line: open.line, code: open.body.join('\n') });
      open = null;
      return;
    }
    open.body.push(raw.slice(Math.min(open.indent, raw.length - raw.trimStart().length)));
  });
  if (open?.mermaid) blocks.push({ line: open.line, error: 'the ```mermaid block is never closed' });
  return blocks;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const files = args.files.length ? args.files : markdownFiles(docs);
  const diagrams = [];
  for (const file of files) {
    for (const block of mermaidBlocks(readFileSync(file, 'utf8'))) {
      diagrams.push({ where: `${relative(root, file)}:${block.line}`, ...block });
    }
  }
  if (diagrams.length === 0) {
    console.error(`diagrams: no \`\`\`mermaid block found in ${files.length} file(s)`);
    process.exit(1);
  }
  if (!existsSync(chromiumBin)) {
    console.error(`diagrams: no Chromium at ${chromiumBin} (apt-get install chromium, or set CHROMIUM_BIN)`);
    process.exit(1);
  }
  if (args.svgDir) mkdirSync(args.svgDir, { recursive: true });

  const browser = await chromium.launch({
    executablePath: chromiumBin,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  let passed = 0;
  let failed = 0;
  try {
    // C4 diagrams wrap their rows at the screen's width (screen.availWidth): render on a
    // common desktop screen, as a reader on GitHub would see them.
    const screen = { width: 1920, height: 1080 };
    const context = await browser.newContext({ screen, viewport: screen });
    // Nothing may come from the network: the page and Mermaid's bundle are local.
    await context.route('**/*', (route) => route.abort());
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(String(error?.message ?? error)));
    await page.setContent('<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>');
    await page.addScriptTag({ path: mermaidBundle });
    await page.evaluate(() => {
      if (!globalThis.mermaid) throw new Error('the Mermaid bundle defined no global `mermaid`');
      globalThis.mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
    });
    console.log(`diagrams: Mermaid ${mermaidVersion} in ${chromiumBin}, ${diagrams.length} block(s) in ${files.length} file(s)`);

    for (const [index, diagram] of diagrams.entries()) {
      let result;
      if (diagram.error) {
        result = { ok: false, error: diagram.error };
      } else {
        pageErrors.length = 0;
        result = await Promise.race([
          page.evaluate(
            async ({ code, id }) => {
              const mermaid = globalThis.mermaid;
              let type = 'unknown';
              try {
                const parsed = await mermaid.parse(code); // throws on a syntax error
                type = parsed?.diagramType ?? type;
                const { svg } = await mermaid.render(id, code);
                // Mermaid draws an "error" diagram instead of throwing in some versions.
                if (/aria-roledescription="error"/.test(svg) || /Syntax error in text/.test(svg)) {
                  return { ok: false, type, error: 'Mermaid rendered its error diagram' };
                }
                return { ok: true, type, svg };
              } catch (error) {
                return { ok: false, type, error: String(error?.message ?? error) };
              } finally {
                // render leaves a temporary container behind when it fails.
                document.getElementById(`d${id}`)?.remove();
                document.getElementById(id)?.remove();
              }
            },
            { code: diagram.code, id: `diagram${index}` },
          ),
          new Promise((resolve) =>
            setTimeout(() => resolve({ ok: false, error: `no result within ${RENDER_TIMEOUT_MS} ms` }), RENDER_TIMEOUT_MS),
          ),
        ]);
        if (result.ok && pageErrors.length) {
          result = { ok: false, type: result.type, error: `page error while rendering: ${pageErrors.join('; ')}` };
        }
      }
      if (result.ok) {
        passed++;
        console.log(`  ok    ${diagram.where} (${result.type})`);
        if (args.svgDir) {
          const name = `${diagram.where.replace(/[^A-Za-z0-9.-]+/g, '_')}.svg`;
          writeFileSync(join(args.svgDir, name), result.svg);
        }
      } else {
        failed++;
        // Mermaid's parse errors count lines from the block's first line: name the file's too.
        const at = /on line (\d+)/.exec(result.error ?? '');
        if (at && !diagram.error) {
          const [file, line] = [diagram.where.replace(/:\d+$/, ''), diagram.line + Number(at[1])];
          result.error = `${result.error}\n(line ${at[1]} of the block is ${file}:${line})`;
        }
        const detail = result.error.trim().split('\n').map((l) => `        ${l}`).join('\n');
        console.log(`  FAIL  ${diagram.where}${result.type ? ` (${result.type})` : ''}\n${detail}`);
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`diagrams: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`diagrams: ${error?.stack ?? error}`);
    process.exit(1);
  });
}
