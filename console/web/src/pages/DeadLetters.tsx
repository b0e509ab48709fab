// Dead letters: filter, open one, select and re-drive (dry run first).
import { useState } from 'preact/hooks'
import { useLive, post, token } from '../api'
import type { LetterList, LetterRow, LetterDetail, RedriveResponse } from '../types'
import { num, time, deviceHref, ErrorBox, Empty, Link, navigate } from '../util'

const FILTERS = ['since', 'until', 'stage', 'reason', 'tenant', 'device'] as const

const key = (l: { partition: number; offset: number }) => `${l.partition}/${l.offset}`

// Redrive is the dry-run-first action for a set of letters.
export function Redrive({ letters, onDone }: { letters: LetterRow[]; onDone?: () => void }) {
  const [plan, setPlan] = useState<RedriveResponse | null>(null)
  const [planFor, setPlanFor] = useState('')
  const [done, setDone] = useState<RedriveResponse | null>(null)
  const [error, setError] = useState('')
  const [busy, setBusy] = useState(false)
  const sel = letters.map(key).sort().join(',')
  const refs = letters.map((l) => ({ partition: l.partition, offset: l.offset, time: l.time }))
  const run = async (dry: boolean) => {
    setBusy(true)
    setError('')
    try {
      const r = await post<RedriveResponse>('/api/deadletters/redrive', { letters: refs, dry_run: dry })
      if (dry) {
        setPlan(r)
        setPlanFor(sel)
        setDone(null)
      } else {
        setDone(r)
        onDone?.()
      }
    } catch (e: any) {
      setError(String(e.message ?? e))
    } finally {
      setBusy(false)
    }
  }
  const shown = done ?? (planFor === sel ? plan : null)
  return (
    <div class="actions">
      <button id="dry-run" disabled={!letters.length || busy} onClick={() => run(true)}>
        Dry run ({letters.length} selected)
      </button>{' '}
      <button id="redrive" class="danger" disabled={!letters.length || busy || planFor !== sel || !plan} onClick={() => run(false)}
        title={token() ? 'produce the records the dry run showed' : 'needs the operator token (sign in above)'}>
        Re-drive {letters.length}
      </button>
      <span class="hint">{planFor === sel && plan ? '' : 'a dry run comes first: it shows what would go where and writes nothing'}</span>
      <p id="action-error"><ErrorBox error={error} /></p>
      {shown && (
        <div id={done ? 'redrive-result' : 'dry-run-result'}>
          <h3>{done ? 'Re-driven' : 'Dry run: what would go where'}</h3>
          <p class="meta" data-redriven={shown.result.redriven}>
            {shown.result.redriven} {done ? 're-driven' : 'would be re-driven'} ({shown.result.records} records), {shown.result.still_failing} still failing,{' '}
            {shown.result.already_redriven} already re-driven, {shown.result.not_redrivable} not re-drivable
          </p>
          <table>
            <thead><tr><th>letter</th><th>outcome</th><th>to topic</th><th>key</th><th class="n">records</th><th>why</th></tr></thead>
            <tbody>
              {shown.outcomes.map((o) => (
                <tr data-outcome={key(o)} data-status={o.status} class={o.status === 'redriven' ? '' : 'warn'}>
                  <td class="mono">{key(o)}</td><td>{o.status.replace('_', ' ')}</td><td class="mono">{o.topic ?? '–'}</td><td class="mono">{o.key ?? '–'}</td>
                  <td class="n">{o.records ?? ''}</td><td>{o.reason ? `${o.reason}: ` : ''}{o.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  )
}

export function DeadLetters({ params }: { params: URLSearchParams }) {
  const qs = new URLSearchParams()
  FILTERS.forEach((f) => params.get(f) && qs.set(f, params.get(f)!))
  const { data, error, reload } = useLive<LetterList>(`/api/deadletters?${qs}`, ['dlq.events'])
  const [selected, setSelected] = useState<Map<string, LetterRow>>(new Map())
  const [form, setForm] = useState<Record<string, string>>(Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? (f === 'since' ? '1h' : '')])))
  const apply = (e: Event) => {
    e.preventDefault()
    const q = new URLSearchParams()
    FILTERS.forEach((f) => form[f] && q.set(f, form[f]))
    setSelected(new Map())
    navigate(`/deadletters?${q}`, true)
  }
  const toggle = (l: LetterRow) => {
    const m = new Map(selected)
    m.has(key(l)) ? m.delete(key(l)) : m.set(key(l), l)
    setSelected(m)
  }
  const letters = data?.letters ?? []
  const all = letters.length > 0 && letters.every((l) => selected.has(key(l)))
  return (
    <section>
      <h1>Dead letters</h1>
      <form class="filters" onSubmit={apply}>
        {FILTERS.map((f) => (
          <label>
            {f}
            {f === 'stage' || f === 'reason' ? (
              <select name={f} value={form[f]} onChange={(e) => setForm({ ...form, [f]: (e.target as HTMLSelectElement).value })}>
                <option value="">any</option>
                {Object.keys((f === 'stage' ? data?.stages : data?.reasons) ?? {}).concat(form[f] ? [form[f]] : []).filter((v, i, a) => a.indexOf(v) === i).sort().map((v) => (
                  <option value={v}>{v}{f === 'stage' && data?.stages[v] != null ? ` (${data.stages[v]})` : f === 'reason' && data?.reasons[v] != null ? ` (${data.reasons[v]})` : ''}</option>
                ))}
              </select>
            ) : (
              <input name={f} value={form[f]} placeholder={f === 'since' ? '1h or 2026-11-23T05:00' : f === 'until' ? 'now' : 'any'}
                onInput={(e) => setForm({ ...form, [f]: (e.target as HTMLInputElement).value })} />
            )}
          </label>
        ))}
        <button type="submit">Filter</button>
      </form>
      <p class="meta">Read from <span class="mono">dlq.events</span>, which keeps the original bytes (the database's copy is for analysts and withholds them).</p>
      <ErrorBox error={error} />
      {data && <p class="meta" data-matched={data.matched}>{data.matched} matching of {data.scanned} in the window{data.matched > letters.length ? `, newest ${letters.length} shown` : ''}</p>}
      <Redrive letters={[...selected.values()]} onDone={reload} />
      {!data ? !error && <Empty>Reading dead letters…</Empty> : letters.length === 0 ? <Empty>No dead letters match.</Empty> : (
        <table class="letters">
          <thead>
            <tr>
              <th><input type="checkbox" aria-label="select all" checked={all} onChange={() => setSelected(all ? new Map() : new Map(letters.map((l) => [key(l), l])))} /></th>
              <th>time</th><th>stage</th><th>reason</th><th>device</th><th>source</th><th>message</th><th>payload</th><th></th>
            </tr>
          </thead>
          <tbody>
            {letters.map((l) => (
              <tr data-letter={key(l)} data-reason={l.reason} data-source={l.source} class={selected.has(key(l)) ? 'selected' : ''}>
                <td><input type="checkbox" aria-label={`select ${key(l)}`} checked={selected.has(key(l))} onChange={() => toggle(l)} /></td>
                <td>{time(l.time)}</td><td>{l.stage}</td><td>{l.reason}</td>
                <td>{l.tenant && l.device ? <Link href={deviceHref(l.tenant, l.device)}>{l.tenant}/{l.device}</Link> : '–'}</td>
                <td class="mono">{l.source}</td><td>{l.message}</td>
                <td class="mono excerpt">{l.excerpt}{l.payload_size > 96 ? '…' : ''} <small>({num(l.payload_size)} B)</small></td>
                <td><Link href={`/deadletters/${key(l)}`}>open</Link></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  )
}

export function LetterPage({ partition, offset }: { partition: string; offset: string }) {
  const { data: d, error } = useLive<LetterDetail>(`/api/deadletters/${partition}/${offset}`)
  return (
    <section>
      <p><Link href="/deadletters">← dead letters</Link></p>
      <h1>Dead letter {partition}/{offset}</h1>
      <ErrorBox error={error} />
      {d && (
        <>
          <dl class="facts">
            <dt>id</dt><dd class="mono">{d.id}</dd>
            <dt>stage / reason</dt><dd>{d.stage} / {d.reason}</dd>
            <dt>message</dt><dd id="letter-message">{d.message}</dd>
            <dt>source</dt><dd class="mono">{d.source}</dd>
            <dt>device</dt><dd>{d.tenant && d.device ? <Link href={deviceHref(d.tenant, d.device)}>{d.tenant}/{d.device}</Link> : '–'}</dd>
            <dt>received</dt><dd>{time(d.received_at)} (record time {time(d.time)})</dd>
            <dt>payload</dt><dd>{num(d.payload_size)} bytes{d.truncated ? ' (truncated when stored)' : ''}{d.content_type ? `, ${d.content_type}` : ''}</dd>
          </dl>
          <h2>Original bytes</h2>
          <pre id="letter-payload" class="payload">{d.payload_text}</pre>
          <details><summary>hex</summary><pre class="payload">{d.payload_hex}</pre></details>
          <h2>Headers</h2>
          <table><tbody>{Object.entries({ ...d.headers, ...d.kafka_headers }).map(([k, v]) => <tr><td class="mono">{k}</td><td class="mono">{v}</td></tr>)}</tbody></table>
          <h2>Re-drive</h2>
          <Redrive letters={[d]} />
        </>
      )}
    </section>
  )
}
