// The editor talks to the server only through /api/v1/ (flows/api.py).
import type { PreviewAnswer } from "./panel";
import type { TestRun } from "./testrun";
import type { ConnectorInfo, Graph, GraphDiff, GraphError, Json } from "./types";

export interface Revision {
  revision: number;
  saved_by: string;
  saved_at: string | null;
}

export interface Draft extends Revision {
  slug: string;
  name: string;
  status: string;
  can_edit: boolean;
  published_version: number;
  graph: Graph | null;
  errors: GraphError[];
  // Deliveries here start test runs of the draft (webhook drafts only).
  test_webhook_url: string | null;
}

export interface SideEffectNode {
  node: string;
  type: string;
  side_effect: string;
}

export type TestRunAnswer =
  | { status: 200; run: TestRun }
  | { status: 409; detail: string; nodes: SideEffectNode[] }
  | { status: 422; detail: string; errors?: GraphError[]; missing?: string[] };

export interface Stale extends Revision {
  detail: string;
}

export interface VersionOut {
  number: number;
  published_by: string;
  published_at: string;
  note: string;
  graph: Graph;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public body: unknown,
  ) {
    super(errorMessage(body) ?? `HTTP ${status}`);
  }
}

/** The API's error shape, {"error": {"code", "message", "details"}}; the
 * editor's own typed answers (a stale save, say) carry "detail". */
function errorMessage(body: unknown): string | undefined {
  if (typeof body !== "object" || !body) return undefined;
  const error = (body as { error?: { message?: unknown } }).error;
  if (error && typeof error === "object" && "message" in error) return String(error.message);
  if ("detail" in body) return String((body as { detail: unknown }).detail);
  return undefined;
}

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class Api {
  constructor(
    private base: string,
    private slug: string,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown, expected: number[] = [200]): Promise<{ status: number; data: T }> {
    const response = await fetch(this.base + path, {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json", "X-CSRFToken": csrfToken() }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!expected.includes(response.status)) throw new ApiError(response.status, data);
    return { status: response.status, data: data as T };
  }

  catalogue() {
    return this.call<ConnectorInfo[]>("GET", "connectors").then((r) => r.data);
  }

  credentials() {
    return this.call<{ name: string; type: string }[]>("GET", "credentials").then((r) => r.data);
  }

  draft() {
    return this.call<Draft>("GET", `flows/${this.slug}/draft`).then((r) => r.data);
  }

  /** 200 with the new revision and the draft's errors, or 409 naming who saved since. */
  save(graph: Graph, baseRevision: number) {
    return this.call<(Revision & { errors: GraphError[] }) | Stale>(
      "PUT",
      `flows/${this.slug}/draft`,
      { graph, base_revision: baseRevision },
      [200, 409],
    );
  }

  publish(baseRevision: number, note: string) {
    return this.call<{ number: number; diff: GraphDiff } | Stale | { detail: string; errors: GraphError[] }>(
      "POST",
      `flows/${this.slug}/publish`,
      { base_revision: baseRevision, note },
      [200, 409, 422],
    );
  }

  /** An expression rendered at a node against sample data; with no
   * expression, only the sample (flows/api.py expression_preview). */
  preview(body: { node: string; expression?: string; graph?: Graph; undo?: boolean }) {
    return this.call<PreviewAnswer>("POST", `flows/${this.slug}/expressions/preview`, body).then((r) => r.data);
  }

  /** Start a test run of the saved draft (or of one step, `node`). */
  async testRun(input: Json, confirmSideEffects: boolean, node?: string): Promise<TestRunAnswer> {
    const body = { input, confirm_side_effects: confirmSideEffects, ...(node ? { node } : {}) };
    const { status, data } = await this.call<unknown>("POST", `flows/${this.slug}/test-runs`, body, [200, 409, 422]);
    if (status === 200) return { status, run: data as TestRun };
    return { status, ...(data as object) } as TestRunAnswer;
  }

  testRunGet(id: number) {
    return this.call<TestRun>("GET", `flows/${this.slug}/test-runs/${id}`).then((r) => r.data);
  }

  testRuns() {
    return this.call<{ id: number; status: string; input: Json }[]>("GET", `flows/${this.slug}/test-runs`).then((r) => r.data);
  }

  versions() {
    return this.call<Omit<VersionOut, "graph">[]>("GET", `flows/${this.slug}/versions`).then((r) => r.data);
  }

  version(number: number) {
    return this.call<VersionOut>("GET", `flows/${this.slug}/versions/${number}`).then((r) => r.data);
  }
}
