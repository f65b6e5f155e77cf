// The two dialogs: the token (asked once per tab, kept in sessionStorage)
// and the confirmation of an action. Native <dialog>: focus moves into it,
// Escape cancels, focus returns to where it was.

import {setToken, token} from './api.js';

// refocus returns the focus to el, or to the element that replaced it in
// a live update (the same data-key).
function refocus(el) {
  if (!el || el === document.body) return;
  if (el.isConnected) {
    el.focus();
    return;
  }
  const key = el.dataset && el.dataset.key;
  const again = key !== undefined && document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (again) again.focus();
}

export function confirmAction(title, text, label) {
  const dlg = document.getElementById('confirm-dialog');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const yes = document.getElementById('confirm-yes');
  const no = document.getElementById('confirm-no');
  yes.textContent = label;
  const back = document.activeElement;
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dlg.removeEventListener('close', onClose);
      if (dlg.open) dlg.close();
      refocus(back);
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    // A close event is dispatched after the dialog closed: one that comes
    // while it is open again belongs to its previous opening.
    const onClose = () => { if (!dlg.open) done(false); };
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dlg.addEventListener('close', onClose);
    dlg.showModal();
    no.focus();
  });
}

// tokenPrompt opens the token dialog; it resolves to true when a token
// was entered, false when cancelled or forgotten.
export function tokenPrompt(reason) {
  const dlg = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const forget = document.getElementById('token-forget');
  const cancel = document.getElementById('token-cancel');
  document.getElementById('token-reason').textContent = reason || (token() ? 'A token is set for this tab.' : 'No token is set for this tab.');
  input.value = '';
  const back = document.activeElement;
  return new Promise((resolve) => {
    const done = (answer) => {
      form.removeEventListener('submit', onSubmit);
      forget.removeEventListener('click', onForget);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('close', onClose);
      if (dlg.open) dlg.close();
      input.value = '';
      refocus(back);
      resolve(answer);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      setToken(t);
      done(true);
    };
    const onForget = () => { setToken(''); done(false); };
    const onCancel = () => done(false);
    // A close event is dispatched after the dialog closed: one that comes
    // while it is open again belongs to its previous opening.
    const onClose = () => { if (!dlg.open) done(false); };
    form.addEventListener('submit', onSubmit);
    forget.addEventListener('click', onForget);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('close', onClose);
    if (!dlg.open) dlg.showModal();
    input.focus();
  });
}
