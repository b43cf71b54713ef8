// "Test run": the sample input for a test run of the draft (or of one
// step), the draft's test webhook URL, and the confirmation the server asks
// for before nodes with side effects run for real.
import { useState } from "react";
import { parseSampleInput } from "./testrun";
import type { Json } from "./types";

export function TestRunDialog({ initial, node, testWebhookUrl, onCancel, onRun }: {
  initial: string;
  node?: string;
  testWebhookUrl: string | null;
  onCancel: () => void;
  onRun: (input: Json) => void;
}) {
  const [text, setText] = useState(initial);
  const [error, setError] = useState("");
  const run = () => {
    const parsed = parseSampleInput(text);
    if ("error" in parsed) setError(parsed.error);
    else onRun(parsed.value);
  };
  return (
    <div className="lf-dialog-backdrop">
      <div className="lf-dialog card" role="dialog" aria-modal="true" aria-labelledby="test-run-title" data-testid="test-run-dialog">
        <h2 id="test-run-title">{node ? `Run the step “${node}”` : "Test-run the draft"}</h2>
        <p className="lf-help">
          {node
            ? "The nodes before it give their pinned data or their output from the last test run; nothing after it runs."
            : "The saved draft runs through the engine as a test run: not a published version, and not counted in the flow's figures. Pinned nodes give their pinned data instead of running."}
        </p>
        <div className="lf-field">
          <label htmlFor="test-run-input">Sample input (JSON: what the trigger receives)</label>
          <textarea id="test-run-input" className="lf-sample" rows={8} value={text} onChange={(e) => { setText(e.target.value); setError(""); }} />
          {error && <p className="lf-field-errors" role="alert">{error}</p>}
        </div>
        {testWebhookUrl && !node && (
          <p className="lf-help" data-testid="test-webhook-url">
            Test URL: deliveries to <code className="lf-test-url">{testWebhookUrl}</code> start test runs of this draft, checked as the live URL checks them.
          </p>
        )}
        <div className="actions">
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="button" className="primary" data-testid="test-run-start" onClick={run}>Run</button>
        </div>
      </div>
    </div>
  );
}

export function SideEffectsDialog({ words, onCancel, onConfirm }: { words: string[]; onCancel: () => void; onConfirm: () => void }) {
  return (
    <div className="lf-dialog-backdrop">
      <div className="lf-dialog card" role="alertdialog" aria-modal="true" aria-labelledby="effects-title" data-testid="side-effects-dialog">
        <h2 id="effects-title">Run nodes with side effects?</h2>
        <p>This test run would call the outside world for real through:</p>
        <ul className="lf-effects" data-testid="side-effect-nodes">
          {words.map((w) => <li key={w}>{w}</li>)}
        </ul>
        <p className="lf-help">Pin their outputs to test without calling them.</p>
        <div className="actions">
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="button" className="danger" data-testid="side-effects-confirm" onClick={onConfirm}>Run them for real</button>
        </div>
      </div>
    </div>
  );
}
