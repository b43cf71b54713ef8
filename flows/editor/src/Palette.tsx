// Connectors by category, searchable; drag one onto the canvas (or click it).
import { useMemo, useState } from "react";
import type { ConnectorInfo } from "./types";

export const DRAG_TYPE = "application/x-ledgerflow-connector";

export function Palette({ connectors, onAdd }: { connectors: ConnectorInfo[]; onAdd: (key: string) => void }) {
  const [query, setQuery] = useState("");
  const groups = useMemo(() => {
    const q = query.trim().toLowerCase();
    const shown = connectors.filter(
      (c) => c.in_palette && (!q || `${c.label} ${c.key} ${c.category} ${c.description}`.toLowerCase().includes(q)),
    );
    const byCategory = new Map<string, ConnectorInfo[]>();
    for (const c of shown) byCategory.set(c.category, [...(byCategory.get(c.category) ?? []), c]);
    return [...byCategory.entries()];
  }, [connectors, query]);
  return (
    <aside className="lf-palette" aria-label="Connectors">
      <input type="search" placeholder="Search connectors" aria-label="Search connectors" value={query} onChange={(e) => setQuery(e.target.value)} />
      {groups.length === 0 && <p className="muted">No connector matches “{query}”.</p>}
      {groups.map(([category, items]) => (
        <section key={category}>
          <h3>{category}</h3>
          <ul>
            {items.map((c) => (
              <li
                key={c.key}
                className="lf-palette-item"
                draggable
                data-testid={`palette-${c.key}`}
                title={c.description}
                onDragStart={(e) => {
                  e.dataTransfer.setData(DRAG_TYPE, c.key);
                  e.dataTransfer.effectAllowed = "move";
                }}
                onDoubleClick={() => onAdd(c.key)}
              >
                <strong>{c.label}</strong>
                {c.side_effect_varies ? (
                  <span className="lf-effect" title="The side-effect class depends on the node's settings">
                    effect by config
                  </span>
                ) : (
                  c.side_effect !== "none" && <span className="lf-effect">{c.side_effect}</span>
                )}
              </li>
            ))}
          </ul>
        </section>
      ))}
    </aside>
  );
}
