// The dashboard's one style sheet, served as /ui/assets/app.css. System fonts only: no
// font file to fetch. Colours keep a contrast of at least 4.5:1 (WCAG AA) on their backgrounds.

export const STYLES = `
:root { --fg: #1b1f24; --muted: #4a5560; --bg: #ffffff; --panel: #f4f6f8; --line: #d0d7de; --accent: #0b5cad;
  --ok: #116329; --warn: #7d4e00; --bad: #a40e26; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); font-size: 15px; line-height: 1.45; }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #0d2a4a; color: #fff; }
header a.brand { color: #fff; font-weight: 600; text-decoration: none; }
header .live { margin: 0 0 0 auto; font-size: .85rem; color: #dbe7f3; }
header form.logout { margin: 0; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; margin: 0 auto; }
main.login { max-width: 360px; margin-top: 8vh; }
main.login form { display: grid; gap: .4rem; }
h1 { font-size: 1.5rem; margin: .4rem 0 .8rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .6rem; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid #f0b429; outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: .4rem 0 1rem; padding: 0; list-style: none; }
.cards li { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .5rem .9rem; min-width: 8rem; }
.cards .n { display: block; font-size: 1.5rem; font-weight: 600; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); } .muted { color: var(--muted); }
form.inline { display: flex; flex-wrap: wrap; align-items: end; gap: .6rem; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .7rem; }
form.inline div { display: grid; gap: .2rem; }
label { font-size: .85rem; font-weight: 600; }
input, select { font: inherit; padding: .3rem .45rem; border: 1px solid #6e7781; border-radius: 4px; background: #fff; color: var(--fg); }
button { font: inherit; padding: .35rem .8rem; border-radius: 4px; border: 1px solid #0b4f94; background: var(--accent); color: #fff; cursor: pointer; }
button.danger { background: var(--bad); border-color: #7a0a1c; }
button.plain { background: #fff; color: var(--fg); border-color: #6e7781; }
header button { background: #fff; color: #0d2a4a; border-color: #fff; }
.error { color: var(--bad); font-weight: 600; }
.notice { color: var(--warn); font-weight: 600; }
.secret { background: #fff8c5; border: 1px solid #d4a72c; padding: .6rem; border-radius: 6px; word-break: break-all; }
.actions { display: flex; flex-wrap: wrap; gap: .6rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: .4rem 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; max-width: 28rem; }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: .5rem; overflow-x: auto; }
.diff-added { color: var(--ok); } .diff-removed { color: var(--bad); } .diff-retagged { color: var(--warn); }
`;
