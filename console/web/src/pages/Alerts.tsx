// Alerts: active and resolved, with duration, rule and value.
import { useLive } from '../api'
import type { AlertRow } from '../types'
import { num, duration, time, deviceHref, ErrorBox, Empty, Link, navigate } from '../util'

export function AlertTable({ rows }: { rows: AlertRow[] }) {
  if (!rows.length) return <Empty>No alerts.</Empty>
  return (
    <table>
      <thead><tr><th>state</th><th>rule</th><th>severity</th><th>device</th><th class="n">value</th><th class="n">threshold</th><th>fired</th><th>duration</th><th>message</th></tr></thead>
      <tbody>
        {rows.map((a) => (
          <tr data-alert={a.alert_id} class={a.state === 'firing' ? 'warn' : ''}>
            <td>{a.state === 'firing' ? 'active' : 'resolved'}</td>
            <td>{a.rule} <small>({a.kind})</small></td>
            <td>{a.severity}</td>
            <td><Link href={deviceHref(a.tenant, a.device_id)}>{a.tenant}/{a.device_id}</Link></td>
            <td class="n">{num(a.value, 2)}</td>
            <td class="n">{num(a.threshold, 2)}</td>
            <td>{time(a.fired_at)}</td>
            <td>{duration(a.seconds)}{a.state === 'firing' ? ' so far' : ''}</td>
            <td>{a.message}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}

export function Alerts({ state }: { state: string }) {
  const { data, error } = useLive<AlertRow[]>(`/api/alerts${state ? `?state=${state}` : ''}`, ['alerts.events'])
  return (
    <section>
      <h1>Alerts</h1>
      <p class="filters">
        {[['', 'all'], ['firing', 'active'], ['resolved', 'resolved']].map(([v, label]) => (
          <button class={state === v ? 'on' : ''} onClick={() => navigate(v ? `/alerts?state=${v}` : '/alerts')}>{label}</button>
        ))}
      </p>
      <ErrorBox error={error} />
      {data ? <AlertTable rows={data} /> : !error && <Empty>Reading alerts…</Empty>}
    </section>
  )
}
