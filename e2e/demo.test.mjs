// End-to-end test of the demo page in real headless Chromium: two browser
// contexts (two "devices") pair by code through a live signalpost server,
// open an RTCDataChannel, exchange text and a 1 MiB file, and see each other
// go away. Run through e2e/run.sh, which starts the server and sets
// SIGNALPOST_URL; `node --test e2e/` runs it against any running server.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const BASE_URL = (process.env.SIGNALPOST_URL || "").replace(/\/+$/, "");
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), "artifacts");
/** Pairing plus ICE on one machine takes about a second; this leaves room for slow CI. */
const STEP_TIMEOUT_MS = 20_000;

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  // Chromium hides host candidates behind mDNS names that nothing resolves here.
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  // A machine whose only interface is loopback still gets a host candidate.
  "--allow-loopback-in-peer-connection",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
  // Playwright's launch() already gives every run a fresh temporary profile
  // (it refuses an explicit --user-data-dir).
];

const skip = !existsSync(CHROMIUM)
  ? `chromium not installed at ${CHROMIUM}`
  : !BASE_URL
    ? "SIGNALPOST_URL not set (run e2e/run.sh)"
    : false;

if (skip && process.env.SIGNALPOST_REQUIRE_ALL === "1") {
  test("the browser test can run (SIGNALPOST_REQUIRE_ALL=1)", () => assert.fail(skip));
}

describe("signalpost demo in headless Chromium", { skip }, () => {
  /** @type {import("playwright-core").Browser} */
  let browser;
  /** Console lines of every page, written to artifacts for post-mortems. */
  const logs = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    writeFileSync(path.join(ARTIFACTS, "console.log"), logs.join("\n") + "\n");
    await browser?.close();
  });

  /**
   * @param {string} name label used in logs
   * @param {import("playwright-core").BrowserContextOptions} [options]
   */
  async function openDemo(name, options = {}) {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("console", (msg) => logs.push(`[${name}] ${msg.type()}: ${msg.text()}`));
    page.on("pageerror", (err) => logs.push(`[${name}] pageerror: ${err.message}`));
    await page.goto(`${BASE_URL}/demo/`);
    return { context, page };
  }

  /** @param {import("playwright-core").Page} page */
  async function createCode(page) {
    await page.getByRole("button", { name: "Create code" }).click();
    const code = page.getByTestId("code");
    await code.filter({ hasText: /^\d{6}$/ }).waitFor();
    return (await code.textContent())?.trim() ?? "";
  }

  /**
   * @param {import("playwright-core").Page} page
   * @param {string} code
   */
  async function enterCode(page, code) {
    await page.getByLabel("Code from the other device").fill(code);
    await page.getByRole("button", { name: "Connect" }).click();
  }

  test("two devices pair by code, chat, send a 1 MiB file intact, and see the other leave", async () => {
    const a = await openDemo("A");
    // Device B is phone-sized: the page must work there too.
    const b = await openDemo("B", { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    try {
      const code = await createCode(a.page);
      assert.match(code, /^\d{6}$/);
      await assert.doesNotReject(a.page.getByTestId("countdown").filter({ hasText: /^[12]:\d\d$/ }).waitFor());
      await a.page.screenshot({ path: path.join(ARTIFACTS, "a-code.png"), fullPage: true });

      await enterCode(b.page, code);
      for (const { page } of [a, b]) {
        await page.locator('body[data-state="connected"]').waitFor();
        await page.locator("[data-testid=route][data-route]").waitFor();
      }
      const routes = await Promise.all([a, b].map(({ page }) => page.getByTestId("route").getAttribute("data-route")));
      for (const route of routes) assert.ok(route === "direct" || route === "relay", `route ${route}`);

      // Text, both ways.
      await a.page.getByLabel("Message", { exact: true }).fill("hello from A");
      await a.page.getByRole("button", { name: "Send", exact: true }).click();
      await b.page.getByTestId("message-received").filter({ hasText: "hello from A" }).waitFor();
      await b.page.getByLabel("Message", { exact: true }).fill("hi A, B here");
      await b.page.getByLabel("Message", { exact: true }).press("Enter");
      await a.page.getByTestId("message-received").filter({ hasText: "hi A, B here" }).waitFor();

      // A 1 MiB file of random bytes from A to B.
      const bytes = randomBytes(1024 * 1024);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await a.page.getByLabel("Send a file").setInputFiles({
        name: "random.bin",
        mimeType: "application/octet-stream",
        buffer: bytes,
      });
      const received = b.page.locator('[data-testid=file-received][data-name="random.bin"]');
      await received.and(b.page.locator('[data-status="verified"]')).waitFor();
      assert.equal(await received.getAttribute("data-size"), String(bytes.length));
      assert.equal(await received.getAttribute("data-sha256"), sha256, "hash computed by the receiving page");

      // Save it as a user would (the page's "Save" link) and hash the saved file.
      const [download] = await Promise.all([
        b.page.waitForEvent("download"),
        received.getByRole("link", { name: "Save random.bin" }).click(),
      ]);
      assert.equal(download.suggestedFilename(), "random.bin");
      const saved = readFileSync(await download.path());
      assert.equal(saved.length, bytes.length);
      assert.equal(createHash("sha256").update(saved).digest("hex"), sha256, "hash of the file B saved");

      // The sender learns that the receiver verified it.
      await a.page.locator('[data-testid=file-sent][data-status="delivered"]').waitFor();
      const speed = await a.page.getByTestId("file-speed").textContent();
      assert.match(speed ?? "", /^100% · 1\.0 MiB of 1\.0 MiB · .+\/s$/);

      await a.page.screenshot({ path: path.join(ARTIFACTS, "a-connected.png"), fullPage: true });
      await b.page.screenshot({ path: path.join(ARTIFACTS, "b-connected.png"), fullPage: true });

      // B closes its page: A is told the peer disconnected.
      await b.page.close();
      const notice = a.page.getByTestId("notice");
      await notice.filter({ hasText: /peer disconnected/i }).waitFor();
      assert.equal(await a.page.locator("body").getAttribute("data-state"), "peer-disconnected");
      assert.ok(await a.page.getByLabel("Message", { exact: true }).isDisabled(), "chat is disabled without a peer");
      await a.page.screenshot({ path: path.join(ARTIFACTS, "a-peer-disconnected.png"), fullPage: true });
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test("a wrong code shows a clear error and pairing can be retried", async () => {
    const a = await openDemo("A2");
    const b = await openDemo("B2", { viewport: { width: 390, height: 844 } });
    try {
      const code = await createCode(a.page);
      // A live code that is not A's: the next one, wrapped to six digits.
      const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, "0");

      await enterCode(b.page, "12ab");
      const error = b.page.getByTestId("error");
      await error.filter({ hasText: "Enter the 6-digit code" }).waitFor();

      await enterCode(b.page, wrong);
      await b.page.locator('[data-testid=error][data-code="not_found_or_expired"]').waitFor();
      assert.match((await error.textContent()) ?? "", /wrong or expired code/i);
      assert.equal(await b.page.getByRole("alert").filter({ hasText: /wrong or expired/i }).count(), 1);
      await b.page.screenshot({ path: path.join(ARTIFACTS, "b-wrong-code.png"), fullPage: true });

      // The right code still works afterwards.
      await enterCode(b.page, code);
      await b.page.locator('body[data-state="connected"]').waitFor();
      await a.page.locator('body[data-state="connected"]').waitFor();
      assert.ok(await error.isHidden(), "the error is cleared once connected");
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
});
