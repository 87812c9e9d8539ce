// Curves as SVG files, drawn with Vega-Lite (rendered headless by Vega). Plumbing, not the project's point.

import * as vega from 'vega';
import writeFileAtomic from 'write-file-atomic';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Series {
  /** Panel title. */
  title: string;
  /** Axis titles. */
  x: string;
  y: string;
  /** Points; `series` separates lines in one panel (an algorithm, a split), each named in its legend. */
  points: { x: number; y: number; series: string }[];
}

/** Vega-Lite specs as SVG, written atomically. */
async function render(path: string, spec: unknown): Promise<void> {
  const view = new vega.View(vega.parse(compile(spec as TopLevelSpec).spec), { renderer: 'none' });
  await writeFileAtomic(path, await view.toSVG());
  view.finalize();
}

/** Writes panels stacked vertically into one SVG file, each with its own legend and axis titles. */
export async function writeCurves(path: string, panels: readonly Series[]): Promise<void> {
  await render(path, {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    vconcat: panels.map((p) => ({
      title: p.title,
      width: 420,
      height: 150,
      data: { values: p.points },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: p.x },
        y: { field: 'y', type: 'quantitative', title: p.y },
        color: { field: 'series', type: 'nominal', title: null, legend: { labelLimit: 320 } },
      },
    })),
    resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } },
  });
}

export interface BandPanel {
  title: string;
  /** Axis titles. */
  x: string;
  y: string;
  /** One line per series (an algorithm): its mean, and a band from lo to hi. */
  points: { x: number; mean: number; lo: number; hi: number; series: string }[];
}

/**
 * Writes panels stacked vertically into one SVG file: per series a line with points at its means and a
 * shaded band from lo to hi; each panel has its own legend and axis titles.
 */
export async function writeBands(path: string, panels: readonly BandPanel[]): Promise<void> {
  await render(path, {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    vconcat: panels.map((p) => ({
      title: p.title,
      width: 480,
      height: 220,
      data: { values: p.points },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: p.x },
        color: { field: 'series', type: 'nominal', title: 'algorithm' },
      },
      // The line first: the legend takes its symbols from the first layer.
      layer: [
        { mark: { type: 'line', point: true }, encoding: { y: { field: 'mean', type: 'quantitative', title: p.y } } },
        {
          mark: { type: 'area', opacity: 0.18 },
          encoding: { y: { field: 'lo', type: 'quantitative', title: p.y }, y2: { field: 'hi' } },
        },
      ],
    })),
    resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } },
  });
}
