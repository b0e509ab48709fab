// Pipeline: the README's data flow drawn from the running system.
import { useSnapshot } from '../api'
import type { Snapshot, Node, StageStatus } from '../types'
import { num, rate, ErrorBox, Empty, time, Link } from '../util'

const W = 150, H = 48, DX = 195, DY = 80, PAD = 12

type Status = 'ok' | 'degraded' | 'down' | 'unwatched' | 'neutral'

function stageOf(s: Snapshot, n: Node): StageStatus | undefined {
  return n.stage ? s.stages.find((st) => st.name === n.stage) : undefined
}

function status(s: Snapshot, n: Node): Status {
  if (n.kind === 'store') return s.tables.length && !s.tables.some((t) => t.error) ? 'ok' : s.problems?.some((p) => p.startsWith('database')) ? 'down' : 'unwatched'
  if (n.kind !== 'stage') return 'neutral'
  const st = stageOf(s, n)
  if (!st) return 'unwatched'
  if (!st.up) return 'down'
  return st.ready ? 'ok' : 'degraded'
}

function subtitle(s: Snapshot, n: Node): string {
  if (n.kind === 'topic') {
    const ts = s.topics.filter((t) => n.topics?.includes(t.name))
    const recs = ts.reduce((a, t) => a + t.records, 0)
    const r = ts.every((t) => t.rate == null) ? null : ts.reduce((a, t) => a + (t.rate ?? 0), 0)
    const dl = n.topics?.includes('dlq.events') ? ` · ${num(s.dead_letters.per_minute, 1)}/min` : ''
    return `${num(recs)} rec · ${rate(r)}${dl}`
  }
  if (n.kind === 'store') {
    const rows = s.tables.reduce((a, t) => a + t.rows, 0)
    return s.tables.length ? `${num(rows)} rows` : 'not read'
  }
  if (n.kind === 'stage') {
    const st = stageOf(s, n)
    const lag = s.groups.filter((g) => n.groups?.includes(g.group)).reduce((a, g) => a + g.lag, 0)
    const lagText = n.groups?.length ? ` · lag ${num(lag)}` : ''
    if (!st) return `not watched${lagText}`
    if (!st.up) return 'DOWN'
    return (st.ready ? 'ready' : 'not ready') + lagText
  }
  return ''
}

function Diagram({ s }: { s: Snapshot }) {
  const nodes = s.topology.nodes
  const pos = new Map(nodes.map((n) => [n.id, { x: PAD + n.col * DX, y: PAD + n.row * DY }]))
  const cols = Math.max(...nodes.map((n) => n.col)) + 1
  const rows = Math.max(...nodes.map((n) => n.row)) + 1
  const width = PAD * 2 + (cols - 1) * DX + W
  const height = PAD * 2 + (rows - 1) * DY + H
  return (
    <svg class="diagram" viewBox={`0 0 ${width} ${height}`} role="img" aria-label="pipeline data flow">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
        </marker>
      </defs>
      {s.topology.edges.map((e, i) => {
        const a = pos.get(e.from)!, b = pos.get(e.to)!
        const fwd = b.x > a.x
        const x1 = fwd ? a.x + W : a.x + W / 2, y1 = fwd ? a.y + H / 2 : a.y + (b.y > a.y ? H : 0)
        const x2 = fwd ? b.x : b.x + W / 2, y2 = fwd ? b.y + H / 2 : b.y + (b.y > a.y ? 0 : H)
        const d = fwd ? `M${x1},${y1} C${x1 + 50},${y1} ${x2 - 50},${y2} ${x2},${y2}` : `M${x1},${y1} L${x2},${y2}`
        const st = s.edges[i] ?? { rate: null }
        const moving = (st.rate ?? 0) > 0
        const lx = x1 + (x2 - x1) * 0.35, ly = y1 + (y2 - y1) * 0.35
        return (
          <g key={i} class={`edge${moving ? ' moving' : ''}`} data-edge={`${e.from}>${e.to}`} data-rate={st.rate ?? ''}>
            <path d={d} marker-end="url(#arrow)" />
            {st.rate != null && (
              <text x={lx} y={ly - 3} class="edge-label">
                {rate(st.rate)}
                {st.lag ? ` · lag ${num(st.lag)}` : ''}
              </text>
            )}
          </g>
        )
      })}
      {nodes.map((n) => {
        const p = pos.get(n.id)!
        const stt = status(s, n)
        return (
          <g key={n.id} class={`node ${n.kind} ${stt}`} data-node={n.id} data-status={stt} transform={`translate(${p.x},${p.y})`}>
            <rect width={W} height={H} rx={n.kind === 'topic' ? 20 : 6} />
            <text x={W / 2} y={19} class="node-label">
              {n.label}
            </text>
            <text x={W / 2} y={36} class="node-sub">
              {subtitle(s, n)}
            </text>
          </g>
        )
      })}
    </svg>
  )
}

export function Pipeline() {
  const s = useSnapshot()
  if (!s) return <Empty>Reading the pipeline…</Empty>
  const topicNames = new Set(s.topology.nodes.flatMap((n) => n.topics ?? []))
  return (
    <section>
      <h1>Pipeline</h1>
      <p class="meta">
        as of {time(s.at)} · <span class="legend ok">ready</span> <span class="legend degraded">not ready</span> <span class="legend down">down</span>{' '}
        <span class="legend unwatched">not watched</span>
      </p>
      {s.problems?.map((p) => <ErrorBox error={p} />)}
      <Diagram s={s} />
      <div class="grid2">
        <div>
          <h2>Stages</h2>
          <table>
            <thead><tr><th>stage</th><th>status</th><th>admin</th><th>detail</th></tr></thead>
            <tbody>
              {s.stages.map((st) => (
                <tr data-stage={st.name} class={!st.up ? 'bad' : st.ready ? '' : 'warn'}>
                  <td>{st.name}</td>
                  <td>{!st.up ? 'down' : st.ready ? 'ready' : 'not ready'}</td>
                  <td class="mono">{st.url ?? '–'}</td>
                  <td>{st.error ?? Object.entries(st.failed ?? {}).map(([k, v]) => `${k}: ${v}`).join('; ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Dead letters per minute <small>(last {s.dead_letters.window_minutes} min)</small></h2>
          <table>
            <thead><tr><th>stage / reason</th><th class="n">per min</th></tr></thead>
            <tbody>
              {Object.entries(s.dead_letters.by_stage).map(([k, v]) => (
                <tr data-dlq-stage={k}><td><Link href={`/deadletters?stage=${encodeURIComponent(k)}`}>{k}</Link></td><td class="n">{num(v, 1)}</td></tr>
              ))}
              {Object.entries(s.dead_letters.by_reason).map(([k, v]) => (
                <tr class="sub"><td>{k}</td><td class="n">{num(v, 1)}</td></tr>
              ))}
              {!Object.keys(s.dead_letters.by_stage).length && <tr><td colSpan={2}>none</td></tr>}
            </tbody>
          </table>
        </div>
        <div>
          <h2>Consumer groups</h2>
          <table>
            <thead><tr><th>group</th><th>state</th><th class="n">members</th><th class="n">lag</th><th class="n">consumed</th></tr></thead>
            <tbody>
              {s.groups.map((g) => (
                <tr data-group={g.group} data-lag={g.lag}>
                  <td>{g.group}</td><td>{g.error ?? g.state}</td><td class="n">{g.members}</td><td class="n">{num(g.lag)}</td>
                  <td class="n">{g.rates ? rate(Object.values(g.rates).reduce((a, b) => a + b, 0)) : '…'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
      <div class="grid2">
        <div>
          <h2>Topics</h2>
          <table>
            <thead><tr><th>topic</th><th class="n">partitions</th><th class="n">records</th><th class="n">end offset</th><th class="n">rate</th></tr></thead>
            <tbody>
              {s.topics.filter((t) => topicNames.has(t.name)).map((t) => (
                <tr data-topic={t.name} data-records={t.records} data-end={t.end}>
                  <td><Link href={`/catalogue/${t.name}`}>{t.name}</Link></td><td class="n">{t.partitions}</td><td class="n">{num(t.records)}</td>
                  <td class="n">{num(t.end)}</td><td class="n">{rate(t.rate)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div>
          <h2>Database</h2>
          <table>
            <thead><tr><th>table</th><th class="n">rows</th><th class="n">rate</th></tr></thead>
            <tbody>
              {s.tables.map((t) => (
                <tr data-table={t.name} data-rows={t.rows} class={t.error ? 'bad' : ''}>
                  <td>{t.name}</td><td class="n">{t.exact ? '' : '≈ '}{num(t.rows)}</td><td class="n">{t.error ?? rate(t.rate)}</td>
                </tr>
              ))}
              {!s.tables.length && <tr><td colSpan={3}>no database configured</td></tr>}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  )
}
