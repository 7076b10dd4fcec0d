package kubeapi_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/livemap/servicemap/internal/testenv/kubeapi"
)

// TestInformerSurvivesRestart checks what Restart is for: a shared informer
// whose watch breaks when kube-apiserver restarts re-establishes it and sees
// objects created afterwards.
func TestInformerSurvivesRestart(t *testing.T) {
	begin := time.Now()
	c := kubeapi.Start(t)
	t.Logf("started in %v", time.Since(begin).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(c.AdminConfig())

	factory := informers.NewSharedInformerFactory(admin, 0)
	svcInformer := factory.Core().V1().Services().Informer()
	// Shutdown waits for the informers, which stop when ctx is done.
	defer func() { cancel(); factory.Shutdown() }()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInformer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	t.Logf("informer synced after %v", time.Since(begin).Round(time.Millisecond))

	create := func(name string) {
		t.Helper()
		_, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create service %s: %v", name, err)
		}
	}
	waitSeen := func(name string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if _, ok, _ := svcInformer.GetStore().GetByKey("default/" + name); ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("informer never saw service %s", name)
	}

	begin = time.Now()
	create("before")
	waitSeen("before")
	t.Logf("seen before restart after %v", time.Since(begin).Round(time.Millisecond))
	c.Restart(t)
	begin = time.Now()
	create("after")
	waitSeen("after")
	t.Logf("seen after restart after %v", time.Since(begin).Round(time.Millisecond))
}
