// The run page's side of a click on a node: its step's row (and its
// compensation's) is marked, its input and output opened, and scrolled to.
// Rows carry data-step-node; the page's live updates replace them, so the
// diagram marks them again after each update (scroll = false).
import { baseNode } from "./nodeStates";

export const FOCUS_CLASS = "lf-step-focus";

export function focusStep(node: string, scroll: boolean): boolean {
  const rows = [...document.querySelectorAll<HTMLElement>("[data-step-node]")];
  for (const row of rows) row.classList.remove(FOCUS_CLASS);
  const mine = rows.filter((row) => baseNode(row.dataset.stepNode ?? "").node === node);
  if (!mine.length) return false;
  for (const row of mine) {
    row.classList.add(FOCUS_CLASS);
    for (const details of row.querySelectorAll<HTMLDetailsElement>("details.step-io")) details.open = true;
  }
  if (scroll) {
    mine[0].scrollIntoView({ behavior: "smooth", block: "center" });
    history.replaceState(null, "", `#${mine[0].id}`);
  }
  return true;
}

/** The node a link like /runs/7/#step-charge points at, if any. */
export function nodeInHash(hash: string): string | null {
  const match = /^#step-(.+)$/.exec(decodeURIComponent(hash));
  return match ? baseNode(match[1]).node : null;
}
