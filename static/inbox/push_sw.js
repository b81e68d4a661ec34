// The inbox's service worker (served at /inbox/push-sw.js, scope /inbox/): shows the web push
// alerts the server sends while no inbox tab is open (org.alerts) and opens the inbox address
// of one when it is clicked. A push carries {title, body, url, tag}; nothing else is cached.

self.addEventListener('push', (event) => {
  let data;
  try {
    data = (event.data && event.data.json()) || {};
  } catch (e) {
    data = {};
  }
  const title = typeof data.title === 'string' && data.title ? data.title : 'Weiyu';
  event.waitUntil(
    self.registration.showNotification(title, {
      body: typeof data.body === 'string' ? data.body : '',
      tag: typeof data.tag === 'string' ? data.tag : undefined,
      icon: '/static/favicon.svg',
      data: { url: typeof data.url === 'string' ? data.url : '/inbox/' },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const wanted = new URL((event.notification.data && event.notification.data.url) || '/inbox/', self.location.origin);
  // only pages of this site are opened, whatever a push said
  const target = wanted.origin === self.location.origin ? wanted : new URL('/inbox/', self.location.origin);
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const tab of tabs) {
      if (new URL(tab.url).pathname === target.pathname && 'focus' in tab) {
        if (tab.url !== target.href && 'navigate' in tab) {
          try {
            await tab.navigate(target.href);
          } catch (e) { /* a tab this worker does not control: focused as it is */ }
        }
        return tab.focus();
      }
    }
    return self.clients.openWindow(target.href);
  })());
});
