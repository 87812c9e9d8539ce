// Curves as SVG files, drawn with Vega-Lite (rendered headless by Vega). Plumbing, not the project's point.

import { writeFile } from 'node:fs/promises';
import * as vega from 'vega';
import writeFileAtomic from 'write-file-atomic';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Series {
  /** Panel title. */
  title: string;
  /** x axis name. */
  x: string;
  /** Points; `series` separates lines in one panel (an algorithm, a split). */
  points: { x: number; y: number; series: string }[];
}

/** Writes panels stacked vertically into one SVG file. */
export async function writeCurves(path: string, panels: readonly Series[]): Promise<void> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    vconcat: panels.map((p) => ({
      title: p.title,
      width: 420,
      height: 150,
      data: { values: p.points },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: p.x },
        y: { field: 'y', type: 'quantitative', title: null },
        color: { field: 'series', type: 'nominal', title: null },
      },
    })),
  } as unknown as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  await writeFile(path, await view.toSVG());
  view.finalize();
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
  const spec = {
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
  } as unknown as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  await writeFileAtomic(path, await view.toSVG());
  view.finalize();
}
