// drover console: the page shell, the menu and the router.
import { render } from 'preact'
import { useState } from 'preact/hooks'
import './style.css'
import { useInfo, token, setToken, post } from './api'
import { usePath, Link } from './util'
import { Pipeline } from './pages/Pipeline'
import { Catalogue, TopicPage } from './pages/Catalogue'
import { DeadLetters, LetterPage } from './pages/DeadLetters'
import { Devices, DevicePage } from './pages/Devices'
import { Alerts } from './pages/Alerts'
import { Registry } from './pages/Registry'

// The menu: a page of a later issue (registry, commands, stream apps) is
// one entry here and one route below, shown when /api/info lists it.
const PAGES: Record<string, string> = {
  pipeline: 'Pipeline',
  catalogue: 'Catalogue',
  deadletters: 'Dead letters',
  devices: 'Devices',
  registry: 'Registry',
  alerts: 'Alerts',
}

function Operator({ actions }: { actions: boolean }) {
  const [t, setT] = useState(token())
  const [err, setErr] = useState('')
  if (!actions) return <span class="badge muted" title="no operator token configured on the server">read-only</span>
  if (t)
    return (
      <span class="operator">
        <span class="badge ok">operator</span> <button onClick={() => { setToken(''); setT('') }}>sign out</button>
      </span>
    )
  return (
    <form class="operator" onSubmit={async (e) => {
      e.preventDefault()
      const v = ((e.target as HTMLFormElement).elements.namedItem('token') as HTMLInputElement).value.trim()
      setToken(v)
      try {
        await post('/api/session', {})
        setT(v)
        setErr('')
      } catch (x: any) {
        setToken('')
        setErr(String(x.message ?? x))
      }
    }}>
      <input name="token" type="password" placeholder="operator token" autocomplete="off" />
      <button type="submit">sign in</button>
      {err && <span class="error-inline">{err}</span>}
    </form>
  )
}

function Route({ path, params }: { path: string; params: URLSearchParams }) {
  const seg = path.split('/').filter(Boolean).map(decodeURIComponent)
  switch (seg[0] ?? 'pipeline') {
    case 'pipeline':
      return <Pipeline />
    case 'catalogue':
      return seg[1] ? <TopicPage topic={seg[1]} /> : <Catalogue />
    case 'deadletters':
      return seg.length === 3 ? <LetterPage partition={seg[1]} offset={seg[2]} /> : <DeadLetters params={params} />
    case 'devices':
      return seg.length === 3 ? <DevicePage tenant={seg[1]} device={seg[2]} /> : <Devices params={params} />
    case 'registry':
      return <Registry params={params} />
    case 'alerts':
      return <Alerts state={params.get('state') ?? ''} />
  }
  return <p class="empty">No page at {path}.</p>
}

function App() {
  const info = useInfo()
  const [path, params] = usePath()
  const current = path.split('/')[1] || 'pipeline'
  return (
    <>
      <header>
        <Link href="/" class="brand">drover</Link>
        <nav>
          {(info?.pages ?? Object.keys(PAGES)).filter((p) => PAGES[p]).map((p) => (
            <Link href={`/${p}`} class={current === p ? 'active' : ''}>{PAGES[p]}</Link>
          ))}
        </nav>
        {info && <Operator actions={info.actions} />}
      </header>
      <main>
        <Route path={path} params={params} />
      </main>
      <footer>drover {info?.version ?? ''} · figures read live from Kafka, the schema registry, the database and the stages' /metrics</footer>
    </>
  )
}

render(<App />, document.getElementById('app')!)
