// Registry: the device registry (devices.registry) as the console's live
// view reads it: tenants, devices with status, type and labels, and the
// devices that send data without being registered. Changes are made with
// `drover devices` or the registry's API, not here.
import { useState } from 'preact/hooks'
import { useLive } from '../api'
import type { RegistryList } from '../types'
import { ago, time, deviceHref, ErrorBox, Empty, Link, navigate, RegStatus, Labels } from '../util'

const STATUSES = ['', 'active', 'suspended', 'revoked']

export function Registry({ params }: { params: URLSearchParams }) {
  const status = params.get('status') ?? ''
  const [q, setQ] = useState(params.get('q') ?? '')
  const query = new URLSearchParams()
  if (q) query.set('q', q)
  if (status) query.set('status', status)
  const qs = query.toString()
  const { data, error } = useLive<RegistryList>(`/api/registry${qs ? `?${qs}` : ''}`, ['devices.registry', 'state.latest'])
  const go = (nq: string, ns: string) => {
    const u = new URLSearchParams()
    if (nq) u.set('q', nq)
    if (ns) u.set('status', ns)
    navigate(`/registry${u.toString() ? `?${u}` : ''}`, true)
  }
  return (
    <section>
      <h1>Device registry</h1>
      <ErrorBox error={error} />
      {data?.problems?.map((p) => <ErrorBox error={p} />)}
      {data && (
        <p class="meta" id="registry-counts">
          {data.topic} · {data.tenants.length} tenants · {Object.values(data.by_status).reduce((a, b) => a + b, 0)} devices:{' '}
          {['active', 'suspended', 'revoked'].map((s) => <span>{data.by_status[s] ?? 0} {s} </span>)}
          · {data.unregistered.length} sending data unregistered
        </p>
      )}
      <p class="filters">
        <input id="registry-search" type="search" placeholder="search device, type or label" value={q}
          onInput={(e) => { const v = (e.target as HTMLInputElement).value; setQ(v); go(v, status) }} />
        {STATUSES.map((s) => <button class={status === s ? 'on' : ''} onClick={() => go(q, s)}>{s || 'all'}</button>)}
      </p>
      {!data ? !error && <Empty>Reading the registry…</Empty> : (
        <>
          <h2>Devices <small>({data.total}{data.devices.length < data.total ? `, first ${data.devices.length} shown` : ''})</small></h2>
          {data.devices.length ? (
            <table id="registry-devices">
              <thead><tr><th>device</th><th>status</th><th>type</th><th>labels</th><th>alternative ids</th><th>credentials</th><th>last seen</th><th>changed</th></tr></thead>
              <tbody>
                {data.devices.map((d) => (
                  <tr data-device={`${d.tenant}/${d.device_id}`} class={d.status === 'active' ? '' : 'bad'}>
                    <td>{d.last_seen ? <Link href={deviceHref(d.tenant, d.device_id)}>{d.tenant}/{d.device_id}</Link> : `${d.tenant}/${d.device_id}`}</td>
                    <td><RegStatus status={d.status} /></td>
                    <td>{d.type || '–'}</td>
                    <td class="labels"><Labels labels={d.labels} /></td>
                    <td class="labels"><Labels labels={d.alt_ids} /></td>
                    <td>{[d.secret && 'secret', d.certificates && `${d.certificates} cert`].filter(Boolean).join(', ') || 'none'}</td>
                    <td title={time(d.last_seen)}>{d.last_seen ? `${ago(d.last_seen)}${d.online ? ' (online)' : ''}` : 'never'}</td>
                    <td title={time(d.updated_at)}>{ago(d.updated_at)}{d.actor ? ` by ${d.actor}` : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : <Empty>No registered device{q || status ? ' matches' : ' yet: drover devices add TENANT/DEVICE'}.</Empty>}
          <h2>Tenants</h2>
          {data.tenants.length ? (
            <table id="registry-tenants">
              <thead><tr><th>tenant</th><th class="n">active</th><th class="n">suspended</th><th class="n">revoked</th><th>CA</th><th>changed</th></tr></thead>
              <tbody>
                {data.tenants.map((t) => (
                  <tr data-tenant={t.id}>
                    <td>{t.id}</td>
                    <td class="n">{t.devices.active ?? 0}</td><td class="n">{t.devices.suspended ?? 0}</td><td class="n">{t.devices.revoked ?? 0}</td>
                    <td>{t.ca ? 'yes' : '–'}</td>
                    <td title={time(t.updated_at)}>{t.created_at ? ago(t.updated_at) : '–'}{t.actor ? ` by ${t.actor}` : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : <Empty>No tenant.</Empty>}
          <h2>Sending data, not registered <small>({data.unregistered.length})</small></h2>
          {data.unregistered.length ? (
            <p class="labels" id="registry-unregistered">
              {data.unregistered.slice(0, 500).map((k) => {
                const [t, ...rest] = k.split('/')
                return <Link href={deviceHref(t, rest.join('/'))}><span class="label">{k}</span></Link>
              })}
            </p>
          ) : <Empty>None: every device in device_state is registered, and no unknown device was dead-lettered in the last 24 h.</Empty>}
        </>
      )}
    </section>
  )
}
