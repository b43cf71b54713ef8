import { createContext } from "react";
import type { Catalogue } from "./connections";
import type { GraphError } from "./types";

export interface EditorContextValue {
  catalogue: Catalogue;
  errorsByNode: Map<string, GraphError[]>;
  readOnly: boolean;
}

export const EditorContext = createContext<EditorContextValue>({
  catalogue: new Map(),
  errorsByNode: new Map(),
  readOnly: true,
});
