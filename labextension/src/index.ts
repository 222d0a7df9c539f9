/*
 * rcsc3-jupyterlab: rcsc3's JupyterLab plugin. Built with JupyterLab's own builder (`npm run build`,
 * or `make labextension`) into rcsc3_proxy/jupyter/labextension/, which setup.cfg's data_files
 * install as share/jupyter/labextensions/rcsc3-jupyterlab.
 *
 * Plugin "rcsc3-jupyterlab:early-launcher". Why: stock JupyterLab opens the Launcher on an empty
 * main area only after its router has run, and the router first waits for
 * "apputils:load-statedb", which awaits a debounced (500 ms) save of the workspace it has just
 * loaded. So the Launcher appeared ~1 s after the layout was restored (measured: 3.3-4.0 s after
 * navigation start, 1.1 s after app.restored). On a plain /lab page with an empty main area the
 * outcome is the same Launcher: open it at once when the layout is restored. Any other page
 * (/lab/tree/..., /lab/workspaces/..., ?reset, ?clone) or a restored layout with a tab in the
 * main area is left to JupyterLab, which then adds no second Launcher (it only opens one on an
 * empty main area).
 *
 * Opening the Launcher that early puts its tiles under JupyterLab's splash screen while the
 * splash fades out: style/index.css lets clicks through the fading splash, so a tile takes a
 * click the moment it shows.
 *
 * What it did is left on document.body.dataset.rcsc3Launcher for tests and for curious admins:
 * "opened", or "left to JupyterLab: <why>".
 *
 * Plugin "rcsc3-jupyterlab:time-left" (timeLeft.ts): the Slurm job's time left in the status bar,
 * and notifications 10 and 2 minutes before its end.
 */

import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

import { timeLeft } from './timeLeft';

const NAME = 'rcsc3-jupyterlab';
const LAUNCHER_CREATE = 'launcher:create';

function note(what: string): void {
  document.body.dataset.rcsc3Launcher = what;
}

function joinPath(base: string, path: string): string {
  return (base || '/').replace(/\/+$/, '') + '/' + (path || '').replace(/^\/+/, '');
}

/** Is this page plain /lab (no document, workspace, reset or clone in the URL)? */
function isPlainLab(paths: JupyterFrontEnd.IPaths | null): boolean {
  const urls = paths?.urls;
  if (!urls?.app) {
    return false;
  }
  const lab = joinPath(urls.base, urls.app).replace(/\/+$/, '');
  const query = new URLSearchParams(window.location.search);
  return window.location.pathname.replace(/\/+$/, '') === lab && !query.has('reset') && !query.has('clone');
}

const earlyLauncher: JupyterFrontEndPlugin<void> = {
  id: `${NAME}:early-launcher`,
  description: 'Opens the Launcher as soon as the layout is restored, on plain /lab with an empty main area.',
  autoStart: true,
  optional: [JupyterFrontEnd.IPaths, ILabShell],
  activate: (app: JupyterFrontEnd, paths: JupyterFrontEnd.IPaths | null, labShell: ILabShell | null): void => {
    if (!isPlainLab(paths)) {
      note('left to JupyterLab: not plain /lab');
      return;
    }
    app.restored
      .then(async () => {
        if (!app.commands.hasCommand(LAUNCHER_CREATE)) {
          note('left to JupyterLab: no launcher');
        } else if (!labShell) {
          note('left to JupyterLab: no JupyterLab shell');
        } else if (!labShell.isEmpty('main')) {
          note('left to JupyterLab: main area not empty');
        } else {
          note('opened');
          await app.commands.execute(LAUNCHER_CREATE);
        }
      })
      .catch((error: unknown) => {
        note(`left to JupyterLab: ${error}`);
        console.warn(`${NAME}: could not open the Launcher early`, error);
      });
  }
};

export default [earlyLauncher, timeLeft];
