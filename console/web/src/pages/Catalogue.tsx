// Catalogue: every topic with its schema, BACKWARD check and drift.
import { useState } from 'preact/hooks'
import { useLive } from '../api'
import type { CatalogueTopic, TopicDetail } from '../types'
import { num, retention, ErrorBox, Empty, Link } from '../util'

function CheckBadge({ check, field, reason }: { check?: string; field?: string; reason?: string }) {
  if (!check) return <span class="badge muted">no schema</span>
  const cls = check === 'identical' || check === 'compatible' ? 'ok' : 'bad'
  return (
    <span class={`badge ${cls}`} title={field ? `${field}: ${reason}` : reason}>
      {check}
    </span>
  )
}

export function Catalogue() {
  const { data, error } = useLive<CatalogueTopic[]>('/api/catalogue')
  const [q, setQ] = useState('')
  if (!data) return error ? <ErrorBox error={error} /> : <Empty>Reading the catalogue…</Empty>
  const rows = data.filter((t) => !q || t.name.includes(q) || (t.description ?? '').toLowerCase().includes(q.toLowerCase()))
  return (
    <section>
      <h1>Catalogue</h1>
      <p class="meta">{data.length} topics · {data.filter((t) => t.drift.length).length} with drift · {data.filter((t) => t.check === 'incompatible' || t.check === 'missing').length} schemas needing attention</p>
      <ErrorBox error={error} />
      <input type="search" placeholder="filter topics" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
      <table class="catalogue">
        <thead>
          <tr><th>topic</th><th class="n">partitions</th><th class="n">replication</th><th>retention</th><th>cleanup</th><th class="n">records</th><th>subject</th><th>BACKWARD check</th><th>drift</th></tr>
        </thead>
        <tbody>
          {rows.map((t) => (
            <tr data-catalogue-topic={t.name} class={t.drift.length ? 'warn' : ''}>
              <td><Link href={`/catalogue/${t.name}`}>{t.name}</Link>{!t.in_catalogue && <span class="badge muted">unmanaged</span>}{!t.on_cluster && <span class="badge bad">missing</span>}
                <div class="desc">{t.description}</div></td>
              <td class="n">{t.partitions}</td><td class="n">{t.replication}</td><td>{retention(t.retention_ms)}</td><td>{t.cleanup_policy ?? '–'}</td>
              <td class="n">{num(t.records)}</td>
              <td>{t.subject ? `${t.subject} v${t.version}` : t.format === 'goka' ? 'goka (internal)' : '–'}</td>
              <td><CheckBadge check={t.check} field={t.check_field} reason={t.check_reason} /></td>
              <td>{t.drift.length ? <ul class="drift">{t.drift.map((d) => <li>{d}</li>)}</ul> : 'none'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}

export function TopicPage({ topic }: { topic: string }) {
  const { data: d, error } = useLive<TopicDetail>(`/api/catalogue/${encodeURIComponent(topic)}`)
  return (
    <section>
      <p><Link href="/catalogue">← catalogue</Link></p>
      <h1>{topic}</h1>
      <ErrorBox error={error} />
      {d && (
        <>
          <p class="meta">{d.description}</p>
          <dl class="facts">
            <dt>partitions</dt><dd>{d.partitions.length} (replication {d.replication})</dd>
            <dt>records</dt><dd>{num(d.records)}</dd>
            <dt>schema</dt><dd>{d.schema ? `${d.schema.subject}, version ${d.schema.version} of [${(d.versions ?? []).join(', ')}], id ${d.schema.id}` : d.schema_note ?? '–'}</dd>
            <dt>BACKWARD check</dt><dd data-check={d.check ?? ''}><CheckBadge check={d.check} field={d.check_field} reason={d.check_reason} /> {d.check_field ? `${d.check_field}: ${d.check_reason}` : ''}</dd>
            <dt>catalogue</dt><dd>{!d.in_catalogue ? 'not in the catalogue (unmanaged)' : d.drift.length ? <ul class="drift">{d.drift.map((x) => <li>{x}</li>)}</ul> : 'matches'}</dd>
          </dl>
          {d.fields && (
            <>
              <h2>{d.record_name}</h2>
              <p>{d.doc}</p>
              <table>
                <thead><tr><th>field</th><th>type</th><th>doc</th><th>default</th></tr></thead>
                <tbody>
                  {d.fields.map((f) => (
                    <tr data-field={f.name}><td class="mono">{f.name}</td><td class="mono">{f.type}</td><td>{f.doc}</td><td class="mono">{f.default === undefined ? '' : JSON.stringify(f.default)}</td></tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
          <h2>Configs</h2>
          <table>
            <thead><tr><th>config</th><th>value</th><th>source</th><th>catalogue</th></tr></thead>
            <tbody>{d.configs.map((c) => <tr><td class="mono">{c.key}</td><td class="mono">{c.value}</td><td>{c.source}</td><td class="mono">{c.catalogue ?? '–'}</td></tr>)}</tbody>
          </table>
          <h2>Partitions</h2>
          <table>
            <thead><tr><th class="n">partition</th><th class="n">leader</th><th class="n">start</th><th class="n">end</th></tr></thead>
            <tbody>{d.partitions.map((p) => <tr><td class="n">{p.partition}</td><td class="n">{p.leader}</td><td class="n">{num(p.start_offset)}</td><td class="n">{num(p.end_offset)}</td></tr>)}</tbody>
          </table>
        </>
      )}
    </section>
  )
}
