// Undo and redo over snapshots of the graph (its JSON text).
export class History {
  private past: string[] = [];
  private future: string[] = [];

  constructor(
    private current: string,
    private limit = 100,
  ) {}

  /** Records a new state; a new change clears what could be redone. */
  record(state: string): void {
    if (state === this.current) return;
    this.past.push(this.current);
    if (this.past.length > this.limit) this.past.shift();
    this.current = state;
    this.future = [];
  }

  undo(): string | null {
    const previous = this.past.pop();
    if (previous === undefined) return null;
    this.future.push(this.current);
    this.current = previous;
    return previous;
  }

  redo(): string | null {
    const next = this.future.pop();
    if (next === undefined) return null;
    this.past.push(this.current);
    this.current = next;
    return next;
  }

  /** Starts again from a state that is not an edit (a reload). */
  reset(state: string): void {
    this.past = [];
    this.future = [];
    this.current = state;
  }

  get canUndo(): boolean {
    return this.past.length > 0;
  }

  get canRedo(): boolean {
    return this.future.length > 0;
  }
}
