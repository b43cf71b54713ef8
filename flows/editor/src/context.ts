import { createContext } from "react";
import type { Catalogue } from "./connections";
import type { GraphError, StepStatus } from "./types";

export interface EditorContextValue {
  catalogue: Catalogue;
  errorsByNode: Map<string, GraphError[]>;
  readOnly: boolean;
  // Painted states of a test run or of a run shown read-only; empty when none.
  statusByNode?: Map<string, StepStatus>;
  // Nodes whose output is pinned in the draft (a test run does not run them).
  pinnedNodes?: Set<string>;
  // A line under a painted status: a retry's attempt, a loop's progress, a compensation's state.
  detailByNode?: Map<string, string>;
}

export const EditorContext = createContext<EditorContextValue>({
  catalogue: new Map(),
  errorsByNode: new Map(),
  readOnly: true,
});
