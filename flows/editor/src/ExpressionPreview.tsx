// Under a field that holds an expression: its value rendered by the server
// (the engine's own sandbox and budget) against the node's sample data, a
// moment after the operator stops typing, or the error in words.
import { useEffect, useState } from "react";
import { type PreviewAnswer, shortJson } from "./panel";

export const PREVIEW_DEBOUNCE_MS = 400;

export type Previewer = (expression: string) => Promise<PreviewAnswer>;

export function ExpressionPreview({ path, text, preview }: { path: string; text: string; preview: Previewer }) {
  const [answer, setAnswer] = useState<{ value?: string; error?: string } | null>(null);
  useEffect(() => {
    let current = true;
    const timer = window.setTimeout(() => {
      preview(text).then(
        (a) => current && setAnswer(a.error ? { error: a.error } : { value: shortJson(a.value) }),
        (e: Error) => current && setAnswer({ error: `no preview: ${e.message}` }),
      );
    }, PREVIEW_DEBOUNCE_MS);
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
  }, [text, preview]);
  if (!answer) return <p className="lf-preview lf-help" data-testid={`preview-${path}`}>…</p>;
  return answer.error ? (
    <p className="lf-preview lf-preview-error" data-testid={`preview-${path}`}>{answer.error}</p>
  ) : (
    <p className="lf-preview" data-testid={`preview-${path}`} title="with the sample data">
      → <code>{answer.value}</code>
    </p>
  );
}
