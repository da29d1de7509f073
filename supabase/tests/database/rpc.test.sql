-- The client RPCs' own checks (they are SECURITY DEFINER, so they check auth.uid() themselves):
-- register_push_device (sign-in, formats, CA031, the device cap), ack_ring, call_ring_summary,
-- call_heartbeat, and orchestrator.lock_user refusing a client that locks someone else.
begin;
create extension if not exists pgtap with schema extensions;
select plan(32);

insert into auth.users (id, email) values
  ('a0000000-0000-4000-8000-00000000000a', 'pgtap-caller@example.test'),
  ('b0000000-0000-4000-8000-00000000000b', 'pgtap-callee@example.test'),
  ('e0000000-0000-4000-8000-00000000000e', 'pgtap-stranger@example.test');
insert into public.calls (id, caller_id, callee_id)
values ('c0000000-0000-4000-8000-000000000001',
        'a0000000-0000-4000-8000-00000000000a', 'b0000000-0000-4000-8000-00000000000b');
insert into public.push_devices (id, user_id, platform, token)
values ('d0000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-00000000000b',
        'android', 'pgtap-callee-fcm-token-0123456789abcdef');
insert into public.push_deliveries (call_id, device_id, recipient_id, kind, provider)
values ('c0000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-00000000000b',
        'b0000000-0000-4000-8000-00000000000b', 'ring', 'fcm');
-- A small cap, so that the eviction shows with three devices.
update orchestrator.settings set max_devices_per_user = 2;

-- anon may execute none of them; a signed-out `authenticated` gets the RPC's own refusal.
set local "request.jwt.claims" = '{"role": "anon"}';
set local role anon;
select throws_ok($$ select public.register_push_device('android', 'x') $$, '42501', null,
  'anon cannot call register_push_device');
select throws_ok(
  $$ select public.ack_ring('c0000000-0000-4000-8000-000000000001',
                            'd0000000-0000-4000-8000-00000000000b') $$,
  '42501', null, 'anon cannot call ack_ring');
select throws_ok(
  $$ select public.call_ring_summary('c0000000-0000-4000-8000-000000000001') $$,
  '42501', null, 'anon cannot call call_ring_summary');
select throws_ok($$ select public.call_heartbeat('c0000000-0000-4000-8000-000000000001') $$,
  '42501', null, 'anon cannot call call_heartbeat');
reset role;
set local "request.jwt.claims" = '{"role": "authenticated"}';
set local role authenticated;
select throws_ok(
  $$ select public.register_push_device('android', 'pgtap-fcm-token-0123456789abcdef-1') $$,
  '42501', 'sign in to register a device', 'register_push_device needs a signed-in user');
select throws_ok(
  $$ select public.ack_ring('c0000000-0000-4000-8000-000000000001',
                            'd0000000-0000-4000-8000-00000000000b') $$,
  '42501', 'sign in to acknowledge a ring', 'ack_ring needs a signed-in user');
reset role;

-- register_push_device as the caller.
set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select throws_ok($$ select public.register_push_device('windows', 'x') $$, '22023', null,
  'an unknown platform is refused');
select throws_ok(
  $$ select public.register_push_device('android', 'pgtap-fcm-token-0123456789abcdef',
                                        voip_token => 'ab') $$,
  '22023', null, 'an android device has no voip_token');
select throws_ok($$ select public.register_push_device('android', '../../evil?x=1 ') $$,
  'CA031', 'invalid push token', 'an FCM token out of format is CA031');
select throws_ok($$ select public.register_push_device('android', 'short') $$,
  'CA031', 'invalid push token', 'a too short FCM token is CA031');
select throws_ok($$ select public.register_push_device('ios', 'not-hex-at-all') $$,
  'CA031', 'invalid push token', 'an APNs token that is not hex is CA031');
select throws_ok(
  $$ select public.register_push_device('android', 'pgtap-fcm-token-0123456789abcdef',
                                        apns_environment => 'staging') $$,
  '22023', null, 'an unknown APNs environment is refused');
select lives_ok(
  $$ select public.register_push_device('ios', repeat('AB', 32)) $$,
  'a well-formed APNs token registers');
select is((select token from public.push_devices
           where user_id = 'a0000000-0000-4000-8000-00000000000a' and platform = 'ios'),
  repeat('ab', 32), 'APNs tokens are stored lowercase');
reset role;

-- The device cap (2 here): a third active device evicts the least recently seen one.
set local "request.jwt.claims" = '{"sub": "e0000000-0000-4000-8000-00000000000e", "role": "authenticated"}';
set local role authenticated;
select lives_ok(
  $$ select public.register_push_device('android', 'pgtap-stranger-fcm-token-000000000001') $$,
  'registers 1');
select lives_ok(
  $$ select public.register_push_device('android', 'pgtap-stranger-fcm-token-000000000002') $$,
  'registers 2');
reset role;
update public.push_devices set last_seen_at = now() - interval '2 hours'
where token = 'pgtap-stranger-fcm-token-000000000001';
update public.push_devices set last_seen_at = now() - interval '1 hour'
where token = 'pgtap-stranger-fcm-token-000000000002';
set local role authenticated;
select lives_ok(
  $$ select public.register_push_device('android', 'pgtap-stranger-fcm-token-000000000003') $$,
  'registers 3');
reset role;
select set_eq(
  $$ select token from public.push_devices
     where user_id = 'e0000000-0000-4000-8000-00000000000e' and disabled_at is null $$,
  array['pgtap-stranger-fcm-token-000000000002', 'pgtap-stranger-fcm-token-000000000003'],
  'the cap keeps the most recently seen devices');
select is((select disabled_reason from public.push_devices
           where token = 'pgtap-stranger-fcm-token-000000000001'),
  'device_limit', 'the least recently seen device is disabled as device_limit');

-- A token registered by another account moves to the new one (the phone changed hands).
set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select lives_ok(
  $$ select public.register_push_device('android', 'pgtap-stranger-fcm-token-000000000003') $$,
  'registers 3');
reset role;
select is((select user_id from public.push_devices
           where token = 'pgtap-stranger-fcm-token-000000000003'),
  'a0000000-0000-4000-8000-00000000000a'::uuid, 'a re-registered token changes owner');

-- ack_ring and call_ring_summary: only the recipient acknowledges; only participants read.
set local role authenticated;  -- still the caller
select is(public.ack_ring('c0000000-0000-4000-8000-000000000001',
                          'd0000000-0000-4000-8000-00000000000b'),
  false, 'the caller cannot acknowledge the callee''s ring');
reset role;
set local "request.jwt.claims" = '{"sub": "b0000000-0000-4000-8000-00000000000b", "role": "authenticated"}';
set local role authenticated;
select is(public.ack_ring('c0000000-0000-4000-8000-000000000001',
                          'd0000000-0000-4000-8000-00000000000b'),
  true, 'the callee acknowledges the ring on their device');
select is(public.call_ring_summary('c0000000-0000-4000-8000-000000000001'),
  '{"devices": 1, "sent": 0, "acked": 1, "failed": 0}'::jsonb,
  'call_ring_summary counts the callee''s rings');
reset role;
set local "request.jwt.claims" = '{"sub": "e0000000-0000-4000-8000-00000000000e", "role": "authenticated"}';
set local role authenticated;
select throws_ok($$ select public.call_ring_summary('c0000000-0000-4000-8000-000000000001') $$,
  'P0002', 'call not found', 'a stranger gets P0002 from call_ring_summary');
select throws_ok($$ select public.call_ring_summary('c0000000-0000-4000-8000-0000000000ff') $$,
  'P0002', 'call not found', 'an unknown call looks the same');

-- call_heartbeat: participants only, P0002 otherwise (unknown and not-yours look the same).
select throws_ok($$ select public.call_heartbeat('c0000000-0000-4000-8000-000000000001') $$,
  'P0002', 'call not found', 'a stranger gets P0002 from call_heartbeat');
select throws_ok($$ select public.call_heartbeat('c0000000-0000-4000-8000-0000000000ff') $$,
  'P0002', 'call not found', 'an unknown call gets P0002 from call_heartbeat');
reset role;
set local "request.jwt.claims" = '{"sub": "a0000000-0000-4000-8000-00000000000a", "role": "authenticated"}';
set local role authenticated;
select is(public.call_heartbeat('c0000000-0000-4000-8000-000000000001') ->> 'status',
  'ringing', 'a participant''s heartbeat returns the call''s status');

-- lock_user: a client may lock only its own id; the system locks anyone.
select throws_ok(
  $$ select orchestrator.lock_user('b0000000-0000-4000-8000-00000000000b') $$,
  '42501', 'a client may only lock its own id', 'a client cannot lock someone else');
select lives_ok(
  $$ select orchestrator.lock_user('a0000000-0000-4000-8000-00000000000a') $$,
  'a client locks its own id');
reset role;
select lives_ok(
  $$ select orchestrator.lock_user('b0000000-0000-4000-8000-00000000000b') $$,
  'the system locks any user');

select finish();
rollback;
