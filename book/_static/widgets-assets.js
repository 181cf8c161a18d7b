// Loaded between require.js and the ipywidgets HTML manager. The manager's icon fonts sit beside it in
// _static/vendor/html-manager/; it finds them relative to its module's URL, which require.js would otherwise
// place next to the page.
(function () {
  var here = new URL("vendor/html-manager/", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = here;
  if (window.require && window.require.config) {
    window.require.config({paths: {"@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "")}});
  }
})();

// ipywidgets typesets widget labels through MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3. Bridge the
// one call it makes, once MathJax 3 has replaced its configuration object (it is loaded with `defer`).
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) return;
  mj.Hub = {
    Queue: function (job) {
      var el = job && job[2];
      if (el) mj.startup.promise.then(function () { return mj.typesetPromise([el]); }).catch(function () {});
    },
  };
});
