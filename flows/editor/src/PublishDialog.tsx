// What publishing will change, against the last published version.
import { useState } from "react";
import type { GraphDiff } from "./types";

export function PublishDialog({ diff, empty, onCancel, onPublish }: {
  diff: GraphDiff;
  empty: boolean;
  onCancel: () => void;
  onPublish: (note: string) => void;
}) {
  const [note, setNote] = useState("");
  return (
    <div className="lf-dialog-backdrop">
      <div className="lf-dialog card" role="dialog" aria-modal="true" aria-labelledby="publish-title" data-testid="publish-dialog">
        <h2 id="publish-title">Publish a new version</h2>
        {empty ? (
          <p>Nothing changed since the last published version.</p>
        ) : (
          <ul className="lf-diff" data-testid="publish-diff">
            {diff.added.map((id) => <li key={`a-${id}`} className="lf-added">added <code>{id}</code></li>)}
            {diff.removed.map((id) => <li key={`r-${id}`} className="lf-removed">removed <code>{id}</code></li>)}
            {diff.changed.map((c) => (
              <li key={`c-${c.id}`} className="lf-changed">changed <code>{c.id}</code>: {c.fields.join(", ")}</li>
            ))}
            {diff.edges_added.map((e) => <li key={`ea-${e}`} className="lf-added">new connection {e}</li>)}
            {diff.edges_removed.map((e) => <li key={`er-${e}`} className="lf-removed">removed connection {e}</li>)}
            {diff.settings_changed && <li className="lf-changed">flow settings changed</li>}
          </ul>
        )}
        <div className="lf-field">
          <label htmlFor="publish-note">Note (what and why)</label>
          <textarea id="publish-note" rows={2} value={note} onChange={(e) => setNote(e.target.value)} />
        </div>
        <div className="actions">
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="button" className="primary" data-testid="publish-confirm" onClick={() => onPublish(note)}>
            Publish
          </button>
        </div>
      </div>
    </div>
  );
}
