"""What `evaluate` writes besides the SR images: CSV tables, report.html, an SVG metric plot."""

import csv
import html
import io
from pathlib import Path

import numpy as np

from srgan_jax.common import files
from srgan_jax.data import image_io

ZOOM_OUT = 192  # pixels on a side of each zoomed crop in the report


def write_text(path, text: str) -> None:
  """Atomic text write: readers see the old file or the whole new one."""
  files.write_atomic(path, text.encode())


def csv_text(rows: list[dict], fields: list[str]) -> str:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
  w.writeheader()
  for r in rows:
    w.writerow(
      {k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in r.items() if k in fields}
    )
  return buf.getvalue()


def zoom_box(hr: np.ndarray) -> tuple[int, int, int]:
  """(y, x, size): the square of 1/4 of the short side with the most detail (HR variance)."""
  h, w = hr.shape[:2]
  size = max(8, min(h, w) // 4)
  luma = hr[..., :3].astype(np.float64).mean(-1)
  best, box = -1.0, (0, 0, size)
  step = max(1, size // 2)
  for y in range(0, h - size + 1, step):
    for x in range(0, w - size + 1, step):
      v = float(luma[y : y + size, x : x + size].var())
      if v > best:
        best, box = v, (y, x, size)
  return box


def zoom(img: np.ndarray, box) -> np.ndarray:
  """Nearest-neighbour enlargement of the box, so pixels stay visible."""
  y, x, size = box
  crop = img[y : y + size, x : x + size]
  k = max(1, ZOOM_OUT // size)
  return np.repeat(np.repeat(crop, k, axis=0), k, axis=1)


def write_report_images(out_dir: Path, set_name: str, name: str, bicubic, sr, hr) -> dict:
  """Writes bicubic, HR and the three zoomed crops; returns {column: path relative to out_dir}."""
  stem = name.replace('/', '__')
  folder = out_dir / 'report_files' / set_name
  folder.mkdir(parents=True, exist_ok=True)
  box = zoom_box(hr)
  rel = {}
  for col, img in (('bicubic', bicubic), ('sr', sr), ('hr', hr)):
    for suffix, data in (('', img), ('_zoom', zoom(img, box))):
      if col == 'sr' and not suffix:
        continue  # the SR image itself is the one in SET/
      path = folder / f'{stem}_{col}{suffix}.png'
      image_io.save_png(path, data)
      rel[col + suffix] = path.relative_to(out_dir).as_posix()
  return rel


def svg_plot(rows: list[dict], keys: list[str], title: str, width=640, height=320) -> str:
  """A line chart (one polyline per key) of rows[i][key] against rows[i]['step']."""
  pts = [(r['step'], r[k], k) for r in rows for k in keys if r.get(k) is not None]
  if not pts:
    return ''
  steps = [p[0] for p in pts]
  vals = [p[1] for p in pts]
  s0, s1 = min(steps), max(steps)
  v0, v1 = min(vals), max(vals)
  if s1 == s0:
    s1 = s0 + 1
  if v1 - v0 < 1e-9:
    v0, v1 = v0 - 0.5, v1 + 0.5
  ml, mr, mt, mb = 60, 150, 30, 40
  sx = lambda s: ml + (s - s0) / (s1 - s0) * (width - ml - mr)
  sy = lambda v: mt + (v1 - v) / (v1 - v0) * (height - mt - mb)
  colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b']
  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
    f'font-family="sans-serif" font-size="12">',
    f'<text x="{width / 2}" y="18" text-anchor="middle">{html.escape(title)}</text>',
    f'<line x1="{ml}" y1="{height - mb}" x2="{width - mr}" y2="{height - mb}" stroke="black"/>',
    f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{height - mb}" stroke="black"/>',
  ]
  for v in np.linspace(v0, v1, 5):
    parts.append(f'<text x="{ml - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
  for s in sorted(set(steps)):
    parts.append(f'<text x="{sx(s):.1f}" y="{height - mb + 16}" text-anchor="middle">{s}</text>')
  parts.append(
    f'<text x="{(ml + width - mr) / 2}" y="{height - 6}" text-anchor="middle">step</text>'
  )
  for i, k in enumerate(keys):
    c = colors[i % len(colors)]
    line = [(sx(r['step']), sy(r[k])) for r in rows if r.get(k) is not None]
    coords = ' '.join(f'{x:.1f},{y:.1f}' for x, y in line)
    parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{coords}"/>')
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>' for x, y in line]
    parts.append(
      f'<text x="{width - mr + 10}" y="{mt + 16 * i + 10}" fill="{c}">{html.escape(k)}</text>'
    )
  parts.append('</svg>')
  return '\n'.join(parts)


def report_html(results: dict, rows: dict[str, list[dict]], plot_svg: str = '') -> str:
  """The page: summary table, optional metric-vs-step plot, then bicubic | SR | HR per image.

  rows[set] = [{'name', 'psnr_y', ..., 'files': {'bicubic', 'sr', 'hr', '*_zoom'}}].
  """
  e = html.escape
  head = (
    f'<h1>srgan_jax evaluation: {e(str(results["method"]))} x{results["scale"]}</h1>'
    f'<p>checkpoint: {e(str(results.get("checkpoint") or "none"))}, '
    f'step: {e(str(results.get("step")))}. Y-channel PSNR/SSIM with a {results["scale"]}-pixel '
    'border cropped (the SR literature protocol), RGB PSNR, the grid artifact (RMS in grey '
    "levels of the high-pass pattern repeating with the LR pixels; HR's beside it)"
    + (
      f', and LPIPS v0.1 ({e(results["lpips_net"])}; lower is better) on the same crops'
      if results.get('lpips_net')
      else ''
    )
    + '.</p>'
  )
  has_lpips = bool(results.get('lpips_net'))
  lp_head = '<th>LPIPS</th>' if has_lpips else ''
  niqe_head = '<th>NIQE (HR)</th>' if results.get('niqe') else ''
  summary = [
    '<table><tr><th>set</th><th>images</th><th>PSNR-Y (dB)</th><th>SSIM-Y</th>'
    f'<th>PSNR-RGB (dB)</th>{lp_head}<th>grid (HR)</th>{niqe_head}<th>bicubic PSNR-Y / SSIM-Y'
    f'{" / LPIPS" if has_lpips else ""}</th></tr>'
  ]
  nan = float('nan')
  for name, d in results['datasets'].items():
    m, b = d['mean'], d.get('bicubic_mean', {})
    lp = f'<td>{m.get("lpips", nan):.4f}</td>' if has_lpips else ''
    lp_b = f' / {b.get("lpips", nan):.4f}' if has_lpips else ''
    summary.append(
      f'<tr><td>{e(name)}</td><td>{d["num_images"]}</td><td>{m["psnr_y"]:.2f}</td>'
      f'<td>{m["ssim_y"]:.4f}</td><td>{m["psnr_rgb"]:.2f}</td>{lp}'
      f'<td>{m.get("grid", nan):.2f} ({d.get("hr_grid", nan):.2f})</td>'
      + (f'<td>{m["niqe"]:.2f} ({d["hr_niqe"]:.2f})</td>' if niqe_head else '')
      + f'<td>{b.get("psnr_y", nan):.2f} / {b.get("ssim_y", nan):.4f}{lp_b}</td></tr>'
    )
  summary.append('</table>')
  body = []
  for name, items in rows.items():
    body.append(
      f'<h2>{e(name)}</h2><table><tr><th></th><th>bicubic</th><th>SR</th><th>HR</th></tr>'
    )
    for it in items:
      f = it['files']
      img = lambda key, cls='': f'<img class="{cls}" src="{e(f[key])}" alt="{key}">'
      lp = f'<br>LPIPS {it["lpips"]:.4f}' if 'lpips' in it else ''
      body.append(
        f'<tr><td>{e(it["name"])}<br>{it["psnr_y"]:.2f} dB<br>{it["ssim_y"]:.4f}{lp}</td>'
        f'<td>{img("bicubic")}</td><td>{img("sr")}</td><td>{img("hr")}</td></tr>'
        f'<tr><td>zoom</td><td>{img("bicubic_zoom", "z")}</td><td>{img("sr_zoom", "z")}</td>'
        f'<td>{img("hr_zoom", "z")}</td></tr>'
      )
    body.append('</table>')
  style = (
    '<style>body{font-family:sans-serif}img{max-width:320px;image-rendering:pixelated}'
    'img.z{width:192px}td,th{padding:4px;vertical-align:top}</style>'
  )
  return (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>srgan_jax evaluation</title>'
    f'{style}</head><body>{head}{"".join(summary)}{plot_svg}{"".join(body)}</body></html>\n'
  )
