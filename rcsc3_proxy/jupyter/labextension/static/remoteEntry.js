/*
 * rcsc3-jupyterlab: rcsc3's JupyterLab plugin, written as a module-federation container by hand
 * (no webpack build, no shared modules): JupyterLab loads this script, calls
 * window._JUPYTERLAB["rcsc3-jupyterlab"].init(shareScope), then .get("./extension")().
 *
 * Plugin "rcsc3-jupyterlab:early-launcher". Why: stock JupyterLab opens the Launcher on an
 * empty main area only after its router has run, and the router first waits for
 * "apputils:load-statedb", which awaits a debounced (500 ms) save of the workspace it has just
 * loaded. So the Launcher appeared ~1 s after the layout was restored (measured here: 3.3-4.0 s
 * after navigation start, 1.1 s after app.restored). On a plain /lab page with an empty main
 * area the outcome is the same Launcher: open it at once when the layout is restored. Any other
 * page (/lab/tree/..., /lab/workspaces/..., ?reset, ?clone) or a restored layout with a tab in
 * the main area is left to JupyterLab, which then adds no second Launcher (it only opens one on
 * an empty main area).
 *
 * What it did is left on document.body.dataset.rcsc3Launcher for tests and for curious admins:
 * "opened", or "left to JupyterLab: <why>".
 */
var _JUPYTERLAB;
(function () {
  "use strict";

  var NAME = "rcsc3-jupyterlab";
  var LAUNCHER_CREATE = "launcher:create";

  function note(what) {
    document.body.dataset.rcsc3Launcher = what;
  }

  function joinPath(base, path) {
    return (base || "/").replace(/\/+$/, "") + "/" + (path || "").replace(/^\/+/, "");
  }

  /** Is this page plain /lab (no document, workspace, reset or clone in the URL)? */
  function isPlainLab(app) {
    var urls = (app.paths && app.paths.urls) || {};
    if (!urls.app) {
      return false;
    }
    var lab = joinPath(urls.base, urls.app).replace(/\/+$/, "");
    var query = new URLSearchParams(window.location.search);
    return window.location.pathname.replace(/\/+$/, "") === lab && !query.has("reset") && !query.has("clone");
  }

  var earlyLauncher = {
    id: NAME + ":early-launcher",
    description: "Opens the Launcher as soon as the layout is restored, on plain /lab with an empty main area.",
    autoStart: true,
    activate: function (app) {
      if (!isPlainLab(app)) {
        note("left to JupyterLab: not plain /lab");
        return;
      }
      app.restored
        .then(function () {
          if (!app.commands.hasCommand(LAUNCHER_CREATE)) {
            note("left to JupyterLab: no launcher");
          } else if (typeof app.shell.isEmpty !== "function" || !app.shell.isEmpty("main")) {
            note("left to JupyterLab: main area not empty");
          } else {
            note("opened");
            return app.commands.execute(LAUNCHER_CREATE);
          }
        })
        .catch(function (error) {
          note("left to JupyterLab: " + error);
          console.warn(NAME + ": could not open the Launcher early", error);
        });
    },
  };

  var modules = {
    "./extension": function () {
      return { __esModule: true, default: [earlyLauncher] };
    },
  };

  (_JUPYTERLAB = typeof _JUPYTERLAB === "undefined" ? {} : _JUPYTERLAB)[NAME] = {
    init: function () {
      return Promise.resolve(); // nothing shared: the plugin uses only the app object it is given
    },
    get: function (module) {
      if (!Object.prototype.hasOwnProperty.call(modules, module)) {
        return Promise.reject(new Error('Module "' + module + '" does not exist in container ' + NAME + "."));
      }
      return Promise.resolve(modules[module]);
    },
  };
})();
