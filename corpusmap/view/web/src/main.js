// Entry point of the page bundle: the data store first (data scripts call corpusmapPut), then the app.
import { boot } from './app.js';
import { installStore } from './store.js';

installStore(window);
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
