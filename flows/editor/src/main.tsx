// Entry: reads the page's JSON config (no inline script), loads the catalogue,
// the credential names and the draft through the API, and mounts the editor.
import "@xyflow/react/dist/style.css";
import "./editor.css";
import { ReactFlowProvider } from "@xyflow/react";
import { createRoot } from "react-dom/client";
import { Api } from "./api";
import { Editor } from "./Editor";

async function start(root: HTMLElement) {
  const config = JSON.parse(document.getElementById("editor-config")!.textContent || "{}") as {
    slug: string;
    can_edit: boolean;
    api: string;
  };
  const api = new Api(config.api, config.slug);
  try {
    const [connectors, draft, credentials] = await Promise.all([
      api.catalogue(),
      api.draft(),
      config.can_edit ? api.credentials() : Promise.resolve([]),
    ]);
    createRoot(root).render(
      <ReactFlowProvider>
        <Editor api={api} exportUrl={`${config.api}flows/${config.slug}/export`} draft={draft} connectors={connectors} credentials={credentials} canEdit={config.can_edit && draft.can_edit} />
      </ReactFlowProvider>,
    );
  } catch (error) {
    root.textContent = `The editor could not load: ${(error as Error).message}`;
    root.setAttribute("role", "alert");
  }
}

const root = document.getElementById("flow-editor");
if (root) void start(root);
