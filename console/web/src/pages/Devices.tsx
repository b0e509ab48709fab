// Devices: a searchable table, a map of last positions over the paddock
// polygons (SVG, no tile service), and a page per device.
import { useEffect, useRef, useState } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { useLive } from '../api'
import type { Device, DeviceDetail } from '../types'
import { num, ago, time, deviceHref, ErrorBox, Empty, Link, navigate, RegStatus, Labels } from '../util'
import { AlertTable } from './Alerts'

type Ring = [number, number][]
interface GeoJSON { features?: { geometry?: { type: string; coordinates: any } }[]; type?: string; coordinates?: any; geometry?: any }

// polygons flattens GeoJSON (FeatureCollection, Feature, Polygon,
// MultiPolygon) into polygons of rings.
function polygons(g: GeoJSON | null): Ring[][] {
  if (!g) return []
  if (g.type === 'FeatureCollection') return (g.features ?? []).flatMap((f) => polygons(f as GeoJSON))
  if (g.type === 'Feature') return polygons(g.geometry)
  if (g.type === 'Polygon') return [g.coordinates as Ring[]]
  if (g.type === 'MultiPolygon') return g.coordinates as Ring[][]
  return []
}

const MW = 640, MH = 420, MPAD = 16

// DeviceMap draws the paddocks and one marker per device with a position.
// The projection is equirectangular around the middle latitude; its
// parameters are on the svg element (data-*) so a test can check a marker.
export function DeviceMap({ devices, focus }: { devices: Device[]; focus?: string }) {
  const [geo, setGeo] = useState<GeoJSON | null>(null)
  useEffect(() => {
    fetch('/api/paddocks').then((r) => r.json()).then(setGeo, () => setGeo(null))
  }, [])
  const polys = polygons(geo)
  const placed = devices.filter((d) => d.lat != null && d.lon != null)
  const pts: [number, number][] = [...polys.flat(2), ...placed.map((d) => [d.lon!, d.lat!] as [number, number])]
  if (!pts.length) return <Empty>No positions yet.</Empty>
  const minLon = Math.min(...pts.map((p) => p[0])), maxLon = Math.max(...pts.map((p) => p[0]))
  const minLat = Math.min(...pts.map((p) => p[1])), maxLat = Math.max(...pts.map((p) => p[1]))
  const cosLat = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180)
  const k = Math.min((MW - 2 * MPAD) / Math.max((maxLon - minLon) * cosLat, 1e-9), (MH - 2 * MPAD) / Math.max(maxLat - minLat, 1e-9))
  const x = (lon: number) => MPAD + (lon - minLon) * cosLat * k
  const y = (lat: number) => MPAD + (maxLat - lat) * k
  return (
    <svg id="device-map" class="map" viewBox={`0 0 ${MW} ${MH}`} role="img" aria-label="map of last device positions"
      data-min-lon={minLon} data-max-lat={maxLat} data-k={k} data-coslat={cosLat} data-pad={MPAD}>
      {polys.map((rings) => (
        <path class="paddock" fill-rule="evenodd" d={rings.map((r) => 'M' + r.map(([lo, la]) => `${x(lo).toFixed(2)},${y(la).toFixed(2)}`).join('L') + 'Z').join(' ')} />
      ))}
      {placed.map((d) => {
        const id = `${d.tenant}/${d.device_id}`
        return (
          <circle class={`marker ${d.online ? 'online' : 'offline'}${d.active_alerts ? ' alerting' : ''}${d.registry && d.registry.status !== 'active' && d.registry.status !== 'unregistered' ? ' inactive' : ''}${focus === id ? ' focus' : ''}`}
            data-device={id} data-lat={d.lat!} data-lon={d.lon!} cx={x(d.lon!)} cy={y(d.lat!)} r={focus === id ? 8 : 5}
            onClick={() => navigate(deviceHref(d.tenant, d.device_id))}>
            <title>{id} · {d.lat!.toFixed(5)}, {d.lon!.toFixed(5)} · {ago(d.position_ts)}</title>
          </circle>
        )
      })}
    </svg>
  )
}

export function Devices({ params }: { params: URLSearchParams }) {
  const [q, setQ] = useState(params.get('q') ?? '')
  const { data, error } = useLive<Device[]>('/api/devices', ['state.latest', 'devices.registry'])
  const text = (d: Device) => `${d.tenant}/${d.device_id} ${d.firmware ?? ''} ${d.registry?.status ?? ''} ${d.registry?.type ?? ''} ` +
    Object.entries(d.registry?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')
  const rows = (data ?? []).filter((d) => !q || text(d).toLowerCase().includes(q.toLowerCase()))
  const inactive = (data ?? []).filter((d) => d.registry && d.registry.status !== 'active' && d.registry.status !== 'unregistered').length
  return (
    <section>
      <h1>Devices</h1>
      <ErrorBox error={error} />
      {data && <p class="meta">{data.length} devices · {data.filter((d) => d.online).length} online · {data.filter((d) => d.active_alerts).length} with active alerts · {inactive} suspended or revoked · {data.filter((d) => d.registry?.status === 'unregistered').length} unregistered</p>}
      <div class="grid2 devices">
        <div>
          <input id="device-search" type="search" placeholder="search device, firmware, status, type or label" value={q}
            onInput={(e) => { const v = (e.target as HTMLInputElement).value; setQ(v); navigate(v ? `/devices?q=${encodeURIComponent(v)}` : '/devices', true) }} />
          {!data ? !error && <Empty>Reading devices…</Empty> : (
            <table>
              <thead><tr><th>device</th><th>registry</th><th>type</th><th>labels</th><th>last seen</th><th>online</th><th class="n">battery</th><th class="n">active alerts</th><th>firmware</th></tr></thead>
              <tbody>
                {rows.map((d) => (
                  <tr data-device={`${d.tenant}/${d.device_id}`} class={d.registry && d.registry.status !== 'active' && d.registry.status !== 'unregistered' ? 'bad' : d.online ? '' : 'muted'}>
                    <td class="nowrap"><Link href={deviceHref(d.tenant, d.device_id)}>{d.tenant}/{d.device_id}</Link></td>
                    <td><RegStatus status={d.registry?.status} /></td>
                    <td>{d.registry?.type || '–'}</td>
                    <td class="labels"><Labels labels={d.registry?.labels} /></td>
                    <td class="nowrap" title={time(d.last_seen)}>{ago(d.last_seen)}</td>
                    <td>{d.online ? 'online' : 'offline'}</td>
                    <td class="n">{d.battery == null ? '–' : `${num(d.battery, 0)} %`}</td>
                    <td class="n">{d.active_alerts || ''}</td>
                    <td>{d.firmware ?? '–'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
        <div>{data && <DeviceMap devices={rows} />}</div>
      </div>
    </section>
  )
}

function Chart({ metric, points }: { metric: string; points: { t: string; v: number }[] }) {
  const el = useRef<HTMLDivElement>(null)
  useEffect(() => {
    if (!el.current) return
    const xs = points.map((p) => new Date(p.t).getTime() / 1000)
    const ys = points.map((p) => p.v)
    const u = new uPlot({ width: 300, height: 110, legend: { show: false }, cursor: { show: true },
      scales: { x: { time: true } }, axes: [{ size: 28, font: '10px sans-serif' }, { size: 52, font: '10px sans-serif' }],
      series: [{}, { label: metric, stroke: '#2563eb', width: 1.5, points: { show: points.length < 30 } }] }, [xs, ys], el.current)
    return () => u.destroy()
  }, [metric, points])
  return (
    <figure class="chart" data-chart={metric} data-points={points.length}>
      <figcaption>{metric} <small>({points.length} latest)</small></figcaption>
      <div ref={el} />
    </figure>
  )
}

export function DevicePage({ tenant, device }: { tenant: string; device: string }) {
  const { data: d, error } = useLive<DeviceDetail>(`/api/devices/${encodeURIComponent(tenant)}/${encodeURIComponent(device)}`, ['state.latest', 'dlq.events', 'alerts.events', 'devices.registry'])
  const id = `${tenant}/${device}`
  return (
    <section>
      <p><Link href="/devices">← devices</Link></p>
      <h1>{id}</h1>
      <ErrorBox error={error} />
      {d?.problems?.map((p) => <ErrorBox error={p} />)}
      {d && (
        <>
          <div class="grid2">
            <div>
              <h2>Shadow</h2>
              <dl class="facts" id="shadow">
                <dt>registry</dt><dd id="registry-status"><RegStatus status={d.registry?.status} /></dd>
                {d.registry_device && <>
                  <dt>type</dt><dd>{d.registry_device.type || '–'}</dd>
                  <dt>labels</dt><dd class="labels"><Labels labels={d.registry_device.labels} /></dd>
                  {Object.keys(d.registry_device.alt_ids).length > 0 && <><dt>alternative ids</dt><dd class="labels"><Labels labels={d.registry_device.alt_ids} /></dd></>}
                  <dt>credentials</dt><dd>{[d.registry_device.secret && 'secret', d.registry_device.certificates && `${d.registry_device.certificates} certificate(s)`].filter(Boolean).join(', ') || 'none'}</dd>
                  <dt>registry change</dt><dd>{time(d.registry_device.updated_at)}{d.registry_device.actor ? ` by ${d.registry_device.actor}` : ''}</dd>
                </>}
                <dt>online</dt><dd>{d.online ? 'online' : 'offline'}</dd>
                <dt>last seen</dt><dd>{time(d.last_seen)} ({ago(d.last_seen)})</dd>
                <dt>position</dt><dd>{d.lat != null ? `${d.lat.toFixed(6)}, ${d.lon!.toFixed(6)} at ${time(d.position_ts)}` : '–'}</dd>
                <dt>last GPS fix</dt><dd id="last-fix">{d.last_fix ? `${d.last_fix.lat.toFixed(6)}, ${d.last_fix.lon.toFixed(6)} at ${time(d.last_fix.ts)}` : '–'}</dd>
                <dt>battery</dt><dd>{d.battery == null ? '–' : `${num(d.battery, 1)} %`}</dd>
                <dt>firmware</dt><dd>{d.firmware ?? '–'}</dd>
                <dt>active alerts</dt><dd>{d.active_alerts}</dd>
                <dt>updated</dt><dd>{time(d.updated_at)}</dd>
                {Object.entries(d.metrics ?? {}).sort().map(([k, v]) => <><dt>{k}</dt><dd class="mono">{num(v, 3)}</dd></>)}
              </dl>
            </div>
            <div><DeviceMap devices={[d]} focus={id} /></div>
          </div>
          <h2>Latest readings</h2>
          <div class="charts">
            {Object.entries(d.series).sort().map(([m, pts]) => <Chart metric={m} points={pts} />)}
            {!Object.keys(d.series).length && <Empty>No readings.</Empty>}
          </div>
          <h2>Alerts</h2>
          <AlertTable rows={d.alerts} />
          <h2>Dead letters <small>(last 24 h)</small></h2>
          {d.dead_letters.length ? (
            <table>
              <thead><tr><th>time</th><th>stage</th><th>reason</th><th>message</th><th></th></tr></thead>
              <tbody>
                {d.dead_letters.map((l) => (
                  <tr data-letter={`${l.partition}/${l.offset}`}><td>{time(l.time)}</td><td>{l.stage}</td><td>{l.reason}</td><td>{l.message}</td>
                    <td><Link href={`/deadletters/${l.partition}/${l.offset}`}>open</Link></td></tr>
                ))}
              </tbody>
            </table>
          ) : <Empty>None.</Empty>}
        </>
      )}
    </section>
  )
}
