// Formatting, routing and small shared components.
import { useEffect, useState } from 'preact/hooks'
import type { ComponentChildren } from 'preact'

export function num(n: number | null | undefined, digits = 0): string {
  if (n == null || Number.isNaN(n)) return '–'
  return n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

export function rate(n: number | null | undefined): string {
  if (n == null) return '…'
  return `${n < 10 && n > 0 ? num(n, 1) : num(n)}/s`
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return '–'
  const s = (Date.now() - new Date(iso).getTime()) / 1000
  if (s < 0) return 'in the future'
  if (s < 60) return `${Math.round(s)} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

export function duration(sec: number): string {
  if (sec < 60) return `${Math.round(sec)} s`
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${Math.round(sec % 60)} s`
  if (sec < 86400) return `${Math.floor(sec / 3600)} h ${Math.round((sec % 3600) / 60)} min`
  return `${Math.floor(sec / 86400)} d ${Math.round((sec % 86400) / 3600)} h`
}

export function time(iso: string | null | undefined): string {
  if (!iso) return '–'
  return new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

export function retention(ms?: string): string {
  if (!ms) return '–'
  const n = Number(ms)
  if (n < 0) return 'forever'
  const d = n / 86400000
  return d >= 1 ? `${num(d, d % 1 ? 1 : 0)} d` : `${num(n / 3600000, 1)} h`
}

// Routing: real paths (the server answers any path with the page), pushed
// with the History API.
export function usePath(): [string, URLSearchParams] {
  const [loc, setLoc] = useState(location.pathname + location.search)
  useEffect(() => {
    const on = () => setLoc(location.pathname + location.search)
    addEventListener('popstate', on)
    addEventListener('drover:navigate', on)
    return () => {
      removeEventListener('popstate', on)
      removeEventListener('drover:navigate', on)
    }
  }, [])
  const u = new URL(loc, location.origin)
  return [u.pathname, u.searchParams]
}

export function navigate(to: string, replace = false) {
  if (replace) history.replaceState(null, '', to)
  else history.pushState(null, '', to)
  dispatchEvent(new Event('drover:navigate'))
}

export function Link(props: { href: string; class?: string; children: ComponentChildren; title?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      title={props.title}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return
        e.preventDefault()
        navigate(props.href)
      }}
    >
      {props.children}
    </a>
  )
}

export function deviceHref(tenant: string, device: string): string {
  return `/devices/${encodeURIComponent(tenant)}/${encodeURIComponent(device)}`
}

export function ErrorBox({ error }: { error: string }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>
}

// RegStatus is a device's registry status as a badge: only an active
// device may connect and publish.
export function RegStatus({ status }: { status: string | null | undefined }) {
  if (!status) return <span class="badge muted reg" data-reg="unknown" title="the device registry could not be read">?</span>
  const cls = status === 'active' ? 'ok' : status === 'unregistered' ? 'muted' : 'bad'
  return <span class={`badge reg ${cls}`} data-reg={status}>{status}</span>
}

export function Labels({ labels }: { labels?: Record<string, string> | null }) {
  const e = Object.entries(labels ?? {}).sort()
  if (!e.length) return <>–</>
  return <>{e.map(([k, v]) => <span class="label">{k}={v}</span>)}</>
}
