// Talking to the console's /api: JSON reads, actions with the operator
// token, and the Server-Sent Events stream of pipeline snapshots.
import { useEffect, useRef, useState } from 'preact/hooks'
import type { Snapshot, Info } from './types'

const TOKEN_KEY = 'drover.operatorToken'

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? ''
}

export function setToken(t: string) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t)
  else sessionStorage.removeItem(TOKEN_KEY)
}

export class APIError extends Error {
  constructor(public status: number, message: string) {
    super(message)
  }
}

async function parse<T>(r: Response): Promise<T> {
  const body = await r.text()
  let data: any = null
  try {
    data = body ? JSON.parse(body) : null
  } catch {
    data = { error: body }
  }
  if (!r.ok) throw new APIError(r.status, data?.error ?? `HTTP ${r.status}`)
  return data as T
}

export async function get<T>(path: string): Promise<T> {
  return parse<T>(await fetch(path, { headers: { Accept: 'application/json' } }))
}

export async function post<T>(path: string, body: unknown, withToken = true): Promise<T> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' }
  if (withToken && token()) headers.Authorization = `Bearer ${token()}`
  return parse<T>(await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) }))
}

// The snapshot stream: one EventSource for the whole page.
type Listener = (s: Snapshot) => void
const listeners = new Set<Listener>()
let latest: Snapshot | null = null
let source: EventSource | null = null

function connect() {
  if (source || document.visibilityState === 'hidden') return
  source = new EventSource('/api/events')
  source.addEventListener('pipeline', (e) => {
    latest = JSON.parse((e as MessageEvent).data) as Snapshot
    listeners.forEach((l) => l(latest!))
  })
}

function disconnect() {
  source?.close()
  source = null
}

// A hidden tab, or a page left for another (and perhaps kept in the
// back-forward cache), listens to nothing: the console then reads nothing
// for it. It catches up when shown again.
document.addEventListener('visibilitychange', () => (document.visibilityState === 'hidden' ? disconnect() : listeners.size && connect()))
addEventListener('pagehide', disconnect)
addEventListener('pageshow', () => listeners.size && connect())

export function useSnapshot(): Snapshot | null {
  const [snap, setSnap] = useState<Snapshot | null>(latest)
  useEffect(() => {
    connect()
    listeners.add(setSnap)
    return () => {
      listeners.delete(setSnap)
    }
  }, [])
  return snap
}

// topicEnd is a topic's end offset in a snapshot (0 when unknown).
export function topicEnd(s: Snapshot | null, topic: string): number {
  return s?.topics?.find((t) => t.name === topic)?.end ?? 0
}

export interface Loaded<T> {
  data: T | null
  error: string
  loading: boolean
  reload: () => void
}

// useLive fetches path, and again whenever one of the watched topics'
// end offsets moves in the snapshot stream (new dead letters, alerts,
// device states): live without polling the database for nothing.
export function useLive<T>(path: string | null, watch: string[] = []): Loaded<T> {
  const snap = useSnapshot()
  const [data, setData] = useState<T | null>(null)
  const [error, setError] = useState('')
  const [loading, setLoading] = useState(true)
  const [n, setN] = useState(0)
  const version = watch.map((t) => topicEnd(snap, t)).join(',')
  const current = useRef(path)
  current.current = path
  useEffect(() => {
    if (!path) return
    let stale = false
    setLoading(true)
    get<T>(path)
      .then((d) => {
        if (!stale) {
          setData(d)
          setError('')
        }
      })
      .catch((e) => !stale && setError(String(e.message ?? e)))
      .finally(() => !stale && setLoading(false))
    return () => {
      stale = true
    }
  }, [path, version, n])
  useEffect(() => setData(null), [path])
  return { data, error, loading, reload: () => setN(n + 1) }
}

export function useInfo(): Info | null {
  const [info, setInfo] = useState<Info | null>(null)
  useEffect(() => {
    get<Info>('/api/info').then(setInfo, () => setInfo(null))
  }, [])
  return info
}
